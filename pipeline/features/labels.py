"""Training labels from what the workshop and the service advisors recorded, nothing else.

A label says whether the component on the vehicle that day fails within the horizon. It is
built from label events per (vehicle, component), read from ``repair_orders`` (imported from
the dealer system) and ``lead_outcomes`` (the CRM's verdicts on our leads):

- ``failure``: an ``unscheduled`` or ``roadside`` order, on the day it was opened;
- ``renewal``: a ``preventive`` order; the part was replaced before it failed;
- ``confirmed``: a lead closed ``done`` (the centre found the worn part and did the work);
- ``no_fault``: a lead ``dismissed`` with the reason "no fault found" (or "NFF").

``inspection`` orders and other dismissals (customer declined, vehicle sold) teach nothing.
Failures, renewals and confirmed findings each end a part's life: the days after them belong
to the new part. The rule for day D, horizon H, the first of these that applies
(docs/models.md#labels):

1. D is a failure day: no label (the car is already broken);
2. the next life-ending event after D is a failure within H days: positive;
3. a confirmed finding on D: positive;
4. a no-fault-found verdict on D: negative;
5. the next life-ending event lies within H days (a renewal or confirmed finding, no
   failure before it): no label, since nobody can know whether the replaced part would have
   failed;
6. the vehicle's data reaches D + H (its last feature day is at least H days later):
   negative;
7. otherwise no label.

A vehicle that never reports any of a component's own features (an ICE car's traction
pack) gets no label for that component. The simulator's ``ground_truth`` is not read here:
it is the referee (:mod:`pipeline.ml.referee`), never the teacher.

H is the component's own: :data:`HORIZON_DAYS` (:func:`horizons` applies an override). It is
what a warning promises, so the same number labels the rows, judges the calls, tunes the
threshold, is stored with the model and travels with every score and lead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, TypeAlias

import duckdb
import polars as pl

from edge.wire.contract import COMPONENTS
from pipeline.errors import TerminalPipelineError
from pipeline.features.engine import POLARS_ENGINE

HORIZON_DAYS: Final[Mapping[str, int]] = MappingProxyType(
    {"traction_battery": 60, "lv_battery": 30, "brakes": 60})
"""How far ahead a warning looks, per component: the product's promise to the service centre.

Slowly wearing parts get 60 days: a traction pack or pads that will fail show it for months,
and at 30 days most false calls were on parts that did fail, just more than 30 days later
(docs/benchmarks.md, warning quality). The 12 V battery keeps 30: its cold-morning outlook
looks 30 days ahead; at 60 days it lost to the one-feature rule in two seeds of three, and at
45 (with the cranking margin and depth-3 trees) it tied the rule in one seed of three."""

HorizonOverride: TypeAlias = int | Mapping[str, int] | None
"""What callers may pass for the horizon: None (each component's :data:`HORIZON_DAYS`), one
number for every component, or a mapping that replaces the components it names."""


class HorizonError(TerminalPipelineError, ValueError):
    """A horizon override names an unknown component or a horizon that is not positive."""


def horizons(override: HorizonOverride = None) -> dict[str, int]:
    """Each component's horizon in days: :data:`HORIZON_DAYS` with ``override`` applied.

    Raises:
        HorizonError: a horizon below one day, or a component the fleet does not have.
    """
    if override is None:
        given: Mapping[str, int] = {}
    elif isinstance(override, int):
        given = dict.fromkeys(COMPONENTS, override)
    else:
        given = override
    unknown = sorted(set(given) - set(COMPONENTS))
    if unknown:
        raise HorizonError(f"no such component for a horizon: {', '.join(unknown)} "
                           f"(components: {', '.join(COMPONENTS)})")
    out = {c: int(given.get(c, HORIZON_DAYS[c])) for c in COMPONENTS}
    bad = {c: h for c, h in out.items() if h < 1}
    if bad:
        raise HorizonError("a horizon must be at least one day: "
                           + ", ".join(f"{c}={h}" for c, h in bad.items()))
    return out


FAILURE: Final = "failure"
RENEWAL: Final = "renewal"
CONFIRMED: Final = "confirmed"
NO_FAULT: Final = "no_fault"
_ENDS_LIFE: Final = (FAILURE, CONFIRMED, RENEWAL)
"""Life-ending events, in the order one wins over another on the same day."""
_NO_FAULT_FOUND: Final = re.compile(r"\bno fault found\b|\bnff\b")

_EVENTS_SQL: Final = """
SELECT vehicle_id, component, CAST(timezone('UTC', opened_at) AS DATE) AS day,
       CASE WHEN kind IN ('unscheduled', 'roadside') THEN 'failure' ELSE 'renewal' END AS event
FROM repair_orders
WHERE kind IN ('unscheduled', 'roadside', 'preventive')
UNION ALL
SELECT vehicle_id, component, CAST(timezone('UTC', outcome_at) AS DATE) AS day,
       CASE WHEN outcome = 'done' THEN 'confirmed' ELSE coalesce(reason, '') END AS event
FROM lead_outcomes
WHERE outcome IN ('done', 'dismissed')
"""


def label_column(component: str) -> str:
    """Name of the label column :func:`attach_labels` adds for ``component``."""
    return f"fails_within__{component}"


def is_no_fault_found(reason: str) -> bool:
    """Whether an advisor's dismissal reason says the part was checked and found fine."""
    words = re.sub(r"[^a-z]+", " ", reason.lower()).strip()
    return bool(_NO_FAULT_FOUND.search(words))


def label_events(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Every label event: ``vehicle_id``, ``component``, ``day`` (UTC date), ``event``."""
    rows = con.execute(_EVENTS_SQL).fetchall()
    kept = []
    for vehicle_id, component, day, event in rows:
        if event not in (FAILURE, RENEWAL, CONFIRMED):
            if not is_no_fault_found(str(event)):
                continue
            event = NO_FAULT
        kept.append((str(vehicle_id), str(component), day, event))
    return pl.DataFrame(kept, schema={"vehicle_id": pl.String, "component": pl.String,
                                      "day": pl.Date, "event": pl.String}, orient="row")


def first_failures(events: pl.DataFrame, component: str) -> dict[str, dt.date]:
    """The first failure day of ``component`` per vehicle (vehicles without one are absent)."""
    failed = events.filter((pl.col("component") == component) & (pl.col("event") == FAILURE))
    first = failed.group_by("vehicle_id").agg(pl.col("day").min()).sort("vehicle_id")
    return dict(zip(first["vehicle_id"].to_list(), first["day"].to_list(), strict=True))


def attach_labels(features: pl.DataFrame, con: duckdb.DuckDBPyConnection,
                  horizon_days: HorizonOverride, own_features: Mapping[str, Sequence[str]]
                  ) -> pl.DataFrame:
    """Add ``fails_within__<component>`` to ``features`` by the rule in the module docstring.

    ``horizon_days`` overrides :data:`HORIZON_DAYS` (see :func:`horizons`); ``own_features``
    names, per component, the feature columns that show whether a vehicle has the part at all
    (its own signals, not the zero-filled fault-code counts).
    """
    per = horizons(horizon_days)
    events = label_events(con)
    last = pl.col("day").max().over("vehicle_id").alias("_last_day")
    out = features.lazy().with_columns(last)
    for comp in COMPONENTS:
        out = _label_component(out, events.filter(pl.col("component") == comp).lazy(), comp,
                               per[comp], [c for c in own_features[comp]
                                              if c in features.columns])
    return out.drop("_last_day").sort("vehicle_id", "day").collect(engine=POLARS_ENGINE)


def _label_component(rows: pl.LazyFrame, events: pl.LazyFrame, component: str,
                     horizon_days: int, own: list[str]) -> pl.LazyFrame:
    rank = pl.col("event").replace_strict({e: i for i, e in enumerate(_ENDS_LIFE)},
                                          default=None, return_dtype=pl.Int32)
    ends = (events.filter(pl.col("event").is_in(_ENDS_LIFE)).with_columns(_rank=rank)
            .group_by("vehicle_id", "day").agg(pl.col("event").sort_by("_rank").first()
                                               .alias("_end_event"))
            .with_columns(_end_day=pl.col("day")).sort("day"))
    no_fault = (events.filter(pl.col("event") == NO_FAULT).select("vehicle_id", "day").unique()
                .with_columns(_no_fault=pl.lit(True)))
    carries = (pl.any_horizontal(pl.col(c).is_not_null() for c in own).any().over("vehicle_id")
               if own else pl.lit(False))
    joined = (rows.sort("day")
              .join_asof(ends, on="day", by="vehicle_id", strategy="forward",
                         check_sortedness=False)
              .join(no_fault, on=["vehicle_id", "day"], how="left")
              .with_columns(_carries=carries))
    ahead = (pl.col("_end_day") - pl.col("day")).dt.total_days()
    event = pl.col("_end_event")
    covered = (pl.col("_last_day") - pl.col("day")).dt.total_days() >= horizon_days
    label = (
        pl.when(~pl.col("_carries")).then(None)
        .when((ahead == 0) & (event == FAILURE)).then(None)
        .when((event == FAILURE) & (ahead <= horizon_days)).then(True)
        .when((ahead == 0) & (event == CONFIRMED)).then(True)
        .when(pl.col("_no_fault").fill_null(False)).then(False)
        .when(ahead <= horizon_days).then(None)
        .when(covered).then(False)
        .otherwise(None)
    )
    return joined.with_columns(label.alias(label_column(component))).drop(
        "_end_event", "_end_day", "_no_fault", "_carries")

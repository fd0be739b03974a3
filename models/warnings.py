"""Warnings as a service advisor meets them: one call per alarm onset, judged by what followed.

A model scores every vehicle-day. An advisor does not act on days, they act on *onsets*: the
first alarm day of a vehicle's component opens an episode (one call, one lead) that lasts
``horizon`` days, the time the warning promised; alarms inside it are the same call. The
first alarm after an episode has run out opens a new one, and so does the first alarm after a
life-ending event (a failure repaired, a part renewed or confirmed worn: a new part).

An onset is **true** when its part's life ends in a failure (or a confirmed worn part) 1 to
``horizon`` days after it; **false** when the part did not fail within the horizon and the data
or the records show it (the vehicle was seen ``horizon`` days later, or the life ended in a
failure or renewal beyond the horizon); undetermined otherwise (a renewal inside the horizon:
nobody knows whether the replaced part would have failed; data ending too soon). A failure is
**warned** when an onset of its life came at least a day before it, within the horizon.

Days on which a life ends (the failure day itself) are never scored: the car is already in.
The figures, per component, are what :func:`warning_events` returns (:class:`WarningFigures`,
whose JSON has exactly the keys of :data:`EVENT_KEYS`); :func:`tune_event_threshold` picks
the threshold whose calls cost least.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from models.errors import InsufficientDataError

__all__ = [
    "CONFIRMED",
    "EVENT_KEYS",
    "FAILURE",
    "RENEWAL",
    "LifeEvents",
    "Onsets",
    "WarningFigures",
    "alarm_onsets",
    "summarise",
    "tune_event_threshold",
    "warning_events",
]

FAILURE: Final = "failure"
CONFIRMED: Final = "confirmed"
RENEWAL: Final = "renewal"
_TRUE_ENDS: Final = frozenset({FAILURE, CONFIRMED})
EVENT_KEYS: Final = ("failures", "warned", "warned_14d", "median_lead_days", "onset_precision",
                     "false_alarms_per_100_vehicle_months")
"""The per-warning figures, in the order reports print them."""
DAYS_PER_MONTH: Final = 365.2425 / 12.0
EARLY_DAYS: Final = 14
"""Lead time (days) that counts as early enough to book a bay without rush (``warned_14d``)."""
_CANDIDATES: Final = 96
"""Thresholds tried by :func:`tune_event_threshold` (quantiles of the scores)."""


@dataclass(frozen=True, slots=True)
class LifeEvents:
    """Life-ending events of one component: ``vehicle``, ``day`` (a number) and ``kind``
    (:data:`FAILURE`, :data:`CONFIRMED` or :data:`RENEWAL`), one entry each."""

    vehicle: NDArray[Any]
    day: NDArray[np.float64]
    kind: NDArray[Any]

    @classmethod
    def of(cls, vehicle: ArrayLike, day: ArrayLike, kind: ArrayLike) -> LifeEvents:
        """Events from three equally long sequences; unknown kinds are refused.

        Raises:
            ValueError: a kind that is not failure, confirmed or renewal, or unequal lengths.
        """
        v, d, k = np.asarray(vehicle), np.asarray(day, dtype=float), np.asarray(kind)
        if not v.size == d.size == k.size:
            raise ValueError("vehicle, day and kind must be equally long")
        unknown = sorted(set(k.tolist()) - {FAILURE, CONFIRMED, RENEWAL})
        if unknown:
            raise ValueError(f"unknown life event kinds {unknown}: use failure, confirmed "
                             "or renewal")
        return cls(v, d, k)

    def of_vehicle(self, vehicle: Any) -> tuple[NDArray[np.float64], NDArray[Any]]:
        """This vehicle's event days (sorted) and kinds."""
        sel = self.vehicle == vehicle
        order = np.argsort(self.day[sel], kind="stable")
        return self.day[sel][order], self.kind[sel][order]


@dataclass(frozen=True, slots=True)
class Onsets:
    """The alarm onsets found by :func:`alarm_onsets` and what became of them.

    Attributes:
        vehicle, day: where each onset is.
        outcome: per onset ``True`` (a failure followed within the horizon), ``False`` (none
            did) or ``None`` (undetermined).
        failures: per recorded failure ``(vehicle, day, lead)``, ``lead`` the days from its
            earliest onset in the warning window, None when it was not warned.
        scored_days: vehicle-days that were scored (the exposure of the false alarm rate).
    """

    vehicle: tuple[Any, ...]
    day: tuple[float, ...]
    outcome: tuple[bool | None, ...]
    failures: tuple[tuple[Any, float, float | None], ...]
    scored_days: int


@dataclass
class _Found:
    """What :func:`alarm_onsets` collects vehicle by vehicle before freezing it."""

    vehicle: list[Any] = field(default_factory=list)
    day: list[float] = field(default_factory=list)
    outcome: list[bool | None] = field(default_factory=list)
    failures: list[tuple[Any, float, float | None]] = field(default_factory=list)
    scored_days: int = 0

    def frozen(self) -> Onsets:
        return Onsets(tuple(self.vehicle), tuple(self.day), tuple(self.outcome),
                      tuple(self.failures), self.scored_days)


def alarm_onsets(vehicle_ids: ArrayLike, days: ArrayLike, alarm: ArrayLike,
                 events: LifeEvents, horizon: float) -> Onsets:
    """Onsets of the alarm (``alarm`` per scored row) and how each turned out.

    Args:
        vehicle_ids, days, alarm: one entry per scored vehicle-day (days as numbers; any
            order). Rows on the day of a life-ending event are left out.
        events: the component's life-ending events.
        horizon: days a warning promises, and the length of one alarm episode.

    Raises:
        ValueError: the row arrays differ in length or ``horizon`` is not positive.
    """
    ids, d, a = np.asarray(vehicle_ids), np.asarray(days, dtype=float), np.asarray(alarm)
    if not ids.size == d.size == a.size:
        raise ValueError("vehicle_ids, days and alarm must be equally long")
    if horizon <= 0:
        raise ValueError(f"horizon must be positive, got {horizon}")
    found = _Found()
    order = np.lexsort((d, ids))
    ids, d, a = ids[order], d[order], a[order].astype(bool)
    starts: list[int] = (np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]).tolist()
                         if ids.size else [])
    for lo, hi in itertools.pairwise([*starts, int(ids.size)]):
        _one_vehicle(ids[lo], d[lo:hi], a[lo:hi], *events.of_vehicle(ids[lo]), horizon, found)
    return found.frozen()


def _one_vehicle(vehicle: Any, d: NDArray[np.float64], a: NDArray[np.bool_],
                 end_day: NDArray[np.float64], end_kind: NDArray[Any], horizon: float,
                 found: _Found) -> None:
    """Add one vehicle's onsets and failures to ``found`` (rows sorted by day)."""
    scored = ~np.isin(d, end_day)
    d, a = d[scored], a[scored]
    found.scored_days += int(d.size)
    if d.size == 0:
        return
    life = np.searchsorted(end_day, d, side="left")  # between events k-1 and k: part life k
    last_seen = float(d[-1])
    onsets_of_life: dict[int, list[float]] = {}
    episode_end, episode_life = -np.inf, -1
    for day, k in zip(d[a].tolist(), life[a].tolist(), strict=True):
        if k == episode_life and day < episode_end:
            continue
        episode_end, episode_life = day + horizon, k
        onsets_of_life.setdefault(k, []).append(day)
        ends = (float(end_day[k]), str(end_kind[k])) if k < end_day.size else None
        found.vehicle.append(vehicle)
        found.day.append(day)
        found.outcome.append(_outcome(day, ends, last_seen, horizon))
    for k, (day, kind) in enumerate(zip(end_day.tolist(), end_kind.tolist(), strict=True)):
        if kind != FAILURE or not np.any(life == k):
            continue  # no scored day of this part's life came before its failure
        window = [o for o in onsets_of_life.get(k, []) if 1 <= day - o <= horizon]
        found.failures.append((vehicle, day, day - min(window) if window else None))


def _outcome(onset: float, ends: tuple[float, str] | None, last_seen: float,
             horizon: float) -> bool | None:
    """True, False or None (undetermined) for an onset, by how its part's life ended."""
    if ends is None:
        return False if last_seen >= onset + horizon else None
    day, kind = ends
    if day - onset <= horizon:
        return True if kind in _TRUE_ENDS else None
    return False


@dataclass(frozen=True, slots=True)
class WarningFigures:
    """The per-warning figures of one set of alarms (:func:`warning_events`).

    ``failures`` counts recorded failures with a scored day before them; ``warned`` those with
    an onset at least one day (and at most the horizon) before; ``warned_14d`` those warned
    at least :data:`EARLY_DAYS` ahead; ``median_lead_days`` is over warned failures (None if
    none); ``onset_precision`` is true onsets over decided ones (None if none);
    ``false_alarms_per_100_vehicle_months`` divides false onsets by scored vehicle-days.
    ``onsets``, ``false_onsets`` and ``undetermined_onsets`` are the counts behind them.
    """

    failures: int
    warned: int
    warned_14d: int
    median_lead_days: float | None
    onset_precision: float | None
    false_alarms_per_100_vehicle_months: float | None
    onsets: int
    false_onsets: int
    undetermined_onsets: int

    def as_json(self) -> dict[str, Any]:
        """Exactly the :data:`EVENT_KEYS`, as the registry and ``fleetcare demo --json`` show."""
        return {key: getattr(self, key) for key in EVENT_KEYS}

    def counts(self) -> dict[str, int]:
        """The onset counts behind the figures."""
        return {"onsets": self.onsets, "false_onsets": self.false_onsets,
                "undetermined_onsets": self.undetermined_onsets}

    def cost(self, cost_fp: float, cost_fn: float) -> float:
        """``cost_fp`` per false onset plus ``cost_fn`` per failure not warned."""
        return float(cost_fp * self.false_onsets + cost_fn * (self.failures - self.warned))


def warning_events(vehicle_ids: ArrayLike, days: ArrayLike, proba: ArrayLike,
                   threshold: float, events: LifeEvents, horizon: float) -> WarningFigures:
    """The per-warning figures of alarms at ``proba >= threshold``."""
    alarm = np.asarray(proba, dtype=float) >= threshold
    return summarise(alarm_onsets(vehicle_ids, days, alarm, events, horizon))


def summarise(found: Onsets) -> WarningFigures:
    """The figures of ``found``."""
    leads = [lead for _, _, lead in found.failures if lead is not None]
    decided = [o for o in found.outcome if o is not None]
    false = sum(1 for o in decided if not o)
    months = found.scored_days / DAYS_PER_MONTH
    return WarningFigures(
        failures=len(found.failures), warned=len(leads),
        warned_14d=sum(1 for lead in leads if lead >= EARLY_DAYS),
        median_lead_days=float(np.median(leads)) if leads else None,
        onset_precision=(len(decided) - false) / len(decided) if decided else None,
        false_alarms_per_100_vehicle_months=100.0 * false / months if months else None,
        onsets=len(found.outcome), false_onsets=false,
        undetermined_onsets=len(found.outcome) - len(decided))


def tune_event_threshold(vehicle_ids: ArrayLike, days: ArrayLike, proba: ArrayLike,
                         events: LifeEvents, horizon: float, *, cost_fp: float,
                         cost_fn: float, candidates: ArrayLike | None = None,
                         min_precision: float | None = None
                         ) -> tuple[float, WarningFigures]:
    """The threshold whose calls cost least (:meth:`WarningFigures.cost`) on (out-of-fold)
    scores, and its figures.

    Candidates are quantiles of the scores (or ``candidates``); a NaN score never alarms.
    Among equally cheap ones the earlier warnings win (more failures warned 14 days ahead,
    then the longer median lead), then the higher threshold (fewer calls).

    With ``min_precision``, only thresholds whose onset precision reaches it compete (the
    cheapest of those wins): an advisor's trust is lost by calls that were wrong, which the
    cost weighs at a tenth of a missed failure. When no threshold reaches the floor, the
    cheapest of all stands (a floor nothing meets must not silence the warning).

    Raises:
        InsufficientDataError: no scored rows.
    """
    p = np.asarray(proba, dtype=float)
    finite = p[np.isfinite(p)]
    if finite.size == 0:
        raise InsufficientDataError("cannot tune a threshold on zero scored rows")
    if candidates is None:  # denser towards the top, where rare failures put the cut
        tail = np.geomspace(0.5, 1.0 / max(2, finite.size), _CANDIDATES)
        cand = np.unique(np.quantile(finite, 1.0 - tail))
    else:
        cand = np.unique(np.asarray(candidates, dtype=float))
    best: tuple[tuple[float, ...], float, WarningFigures] | None = None
    for cut in cand[::-1]:
        figures = warning_events(vehicle_ids, days, p, float(cut), events, horizon)
        short = (min_precision is not None
                 and (figures.onset_precision or 0.0) < min_precision)
        key = (float(short), figures.cost(cost_fp, cost_fn), -figures.warned_14d,
               -(figures.median_lead_days or 0.0))
        if best is None or key < best[0]:
            best = (key, float(cut), figures)
    assert best is not None
    return best[1], best[2]

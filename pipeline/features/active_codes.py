"""Which fault codes are active: the vehicle's own clears, and the repairs the workshop made.

A CAN fault-code report carries no "cleared" status, and an ECU whose part was replaced simply
stops sending the code, so the store alone would keep the code active forever. In a workshop
the technician clears the codes after the repair: fleetcare reads a repair order that replaces
or repairs a component (kind :data:`CLEARING_KINDS`) as a clear, at the order's ``opened_at``,
of every code of that component (:data:`pipeline.features.fault_codes.CATALOG`) the vehicle
reported before it. A report after ``opened_at`` makes the code active again; a report stamped
at the very instant the order opened counts as before it. An ``inspection`` clears nothing: it
replaces nothing, so a code it found is still a fault.

One history (:func:`history_cte`), three readers: the daily fault-code features
(:data:`pipeline.features.daily_sql.DTC`), advice's fault-code leads and ``fleetcare fleet
show`` (:func:`active_fault_codes`). Over the fleet it is SQL: the repair clears are a join of
``repair_orders`` with the catalogue and the codes each vehicle reported. For a few vehicles
(an urgent lead's one) :func:`active_fault_codes` replays the same rules over their rows in
Python, much cheaper than the SQL's set-up; a test holds the two to the same answer.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Final

import duckdb
import polars as pl
from polars.datatypes import DataTypeClass

from pipeline.features.fault_codes import CATALOG, catalog_frame

CLEARING_KINDS: Final = ("unscheduled", "roadside", "preventive")
"""Repair-order kinds that clear their component's fault codes (``inspection`` does not)."""

_CODE_COMPONENTS: Final = ", ".join(
    f"('{e.code}', '{e.component}')" for e in CATALOG.values() if e.component is not None)
_KINDS: Final = ", ".join(f"'{k}'" for k in CLEARING_KINDS)


def history_cte(bound: str, vehicles: str = "TRUE") -> str:
    """SQL of the CTEs ``dtc_raw`` and ``dtc_history``: every fault-code event up to ``bound``
    (a SQL expression, e.g. ``$until``) plus one clear per repair order and code it clears.

    ``dtc_history`` has one row per event: ``vehicle_id, code`` (upper case), ``ts``, ``d``
    (its UTC day), ``cleared``, ``status`` (``repaired`` for a repair's clear), ``repair``,
    ``seq`` (the order of the code's events; a repair sorts after a report at the same
    instant), ``episode_start`` (UTC day of the first report after the last clear, by event)
    and ``next_repair_day`` (UTC day of the first repair clear at or after the event, None
    when none). ``vehicles`` is a SQL condition on ``vehicle_id`` that limits the read (the
    repair orders read are those of the vehicles whose codes were read).
    """
    return f"""
dtc_raw AS (
  SELECT vehicle_id, upper(code) AS code, ts, cleared, status, FALSE AS repair
  FROM dtc_events WHERE ts <= {bound} AND ({vehicles})
), dtc_clears AS (
  SELECT r.vehicle_id, seen.code, r.opened_at AS ts, TRUE AS cleared, 'repaired' AS status,
         TRUE AS repair
  FROM repair_orders r
  JOIN (VALUES {_CODE_COMPONENTS}) AS cat(code, component) ON cat.component = r.component
  JOIN (SELECT DISTINCT vehicle_id, code FROM dtc_raw) seen
    ON seen.vehicle_id = r.vehicle_id AND seen.code = cat.code
  WHERE r.kind IN ({_KINDS}) AND r.opened_at <= {bound}
), dtc_seq AS (
  SELECT *, CAST(timezone('UTC', ts) AS DATE) AS d,
         row_number() OVER (PARTITION BY vehicle_id, code ORDER BY ts, repair) AS seq
  FROM (SELECT * FROM dtc_raw UNION ALL SELECT * FROM dtc_clears)
), dtc_episodes AS (
  SELECT *, sum(CAST(cleared AS INTEGER)) OVER (PARTITION BY vehicle_id, code ORDER BY seq
                                                ROWS UNBOUNDED PRECEDING) AS episode,
         CAST(timezone('UTC', min(ts) FILTER (WHERE repair) OVER (
           PARTITION BY vehicle_id, code ORDER BY seq
           ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)) AS DATE) AS next_repair_day
  FROM dtc_seq
), dtc_history AS (
  SELECT *, min(d) FILTER (WHERE NOT cleared)
              OVER (PARTITION BY vehicle_id, code, episode) AS episode_start
  FROM dtc_episodes
)"""


_ACTIVE_SQL: Final = f"""
WITH {history_cte("$now", "$all OR list_contains($vehicles, vehicle_id)")}
SELECT vehicle_id, code, arg_max(episode_start, seq) AS first_seen,
       max(ts) FILTER (WHERE NOT cleared) AS last_seen, arg_max(status, seq) AS status
FROM dtc_history
GROUP BY ALL
HAVING NOT arg_max(cleared, seq)
"""

_SCHEMA: Final[dict[str, pl.DataType | DataTypeClass]] = {
    "vehicle_id": pl.String, "code": pl.String, "first_seen": pl.Date,
    "last_seen": pl.Datetime("us", "UTC"), "status": pl.String}


def active_fault_codes(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                       vehicles: Collection[str] | None = None) -> pl.DataFrame:
    """The fault codes active at ``now``: neither cleared by the vehicle nor by a repair since.

    Args:
        con: an open store (``dtc_events`` and ``repair_orders``).
        now: ignore events and orders stamped after this instant.
        vehicles: only these vehicles (default: the whole fleet).

    Returns:
        ``vehicle_id, code, first_seen`` (UTC day of the first report since the last clear),
        ``last_seen``, ``status`` (of the latest report), and the catalogue's ``component,
        description, severity`` (null for a code the catalogue does not know), by vehicle and
        code.
    """
    if vehicles is not None and len(vehicles) <= FEW_VEHICLES:
        active = pl.DataFrame(_replay(con, now, sorted(vehicles)), schema=_SCHEMA, orient="row")
    else:
        rel = con.sql(_ACTIVE_SQL, params={"now": now, "vehicles": sorted(vehicles or ()),
                                           "all": vehicles is None})
        active = rel.pl() if rel is not None else pl.DataFrame(schema=_SCHEMA)
        active = active.cast({k: v for k, v in _SCHEMA.items() if k != "last_seen"})
    return (active.join(catalog_frame(), on="code", how="left")
            .sort("vehicle_id", "code"))


FEW_VEHICLES: Final = 32
"""Up to this many vehicles, :func:`active_fault_codes` replays their history in Python.

The fleet's SQL (three window functions over a union, a join with the catalogue) costs
DuckDB 12-25 ms of pipeline set-up however few rows it reads, most of an urgent lead's
advice; a vehicle's events are a handful of rows, which one plain statement fetches and
:func:`_replay` folds in microseconds. Both follow :func:`history_cte`'s rules, and a test
replays random histories through both and compares them."""

_CODE_OF_COMPONENT: Final = {
    component: tuple(e.code for e in CATALOG.values() if e.component == component)
    for component in {e.component for e in CATALOG.values() if e.component is not None}}

_FEW_SQL: Final = f"""
SELECT vehicle_id, upper(code), ts, cleared, status, FALSE FROM dtc_events
WHERE ts <= $now AND list_contains($vehicles, vehicle_id)
UNION ALL
SELECT vehicle_id, component, opened_at, TRUE, 'repaired', TRUE FROM repair_orders
WHERE opened_at <= $now AND kind IN ({_KINDS}) AND list_contains($vehicles, vehicle_id)
"""
"""The vehicles' reports, and their clearing repair orders (the component in ``code``'s
place: :func:`_replay` turns each into one clear per code of it the vehicle reported)."""


def _replay(con: duckdb.DuckDBPyConnection, now: dt.datetime, vehicles: list[str]
            ) -> list[tuple[object, ...]]:
    """:data:`_ACTIVE_SQL`'s rows for a few vehicles, from their events in Python: per
    (vehicle, code) the events in (ts, report before repair) order; active when the last is
    not a clear; first seen on the UTC day of the first report since the last clear; last
    seen at the latest report; the status of the last event."""
    rows = con.execute(_FEW_SQL, {"now": now, "vehicles": vehicles}).fetchall()
    reported = {(v, code) for v, code, *_rest, repair in rows if not repair}
    events: dict[tuple[str, str], list[tuple[dt.datetime, bool, bool, str]]] = {}
    for vehicle, code, ts, cleared, status, repair in rows:
        ts = ts.astimezone(dt.UTC)
        codes = _CODE_OF_COMPONENT.get(code, ()) if repair else (code,)
        for one in codes:
            if repair and (vehicle, one) not in reported:
                continue  # a repair clears only codes the vehicle reported
            events.setdefault((vehicle, one), []).append((ts, repair, cleared, status))
    out: list[tuple[object, ...]] = []
    for (vehicle, code), history in sorted(events.items()):
        history.sort(key=lambda e: (e[0], e[1]))  # stable: ties keep the store's order
        last_ts, _repair, last_cleared, last_status = history[-1]
        if last_cleared:
            continue
        start = max((i for i, e in enumerate(history) if e[2]), default=0)
        first = min(e[0] for e in history[start:] if not e[2]).date()
        out.append((vehicle, code, first, last_ts, last_status))
    return out

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
show`` (:func:`active_fault_codes`). Everything is SQL over the whole fleet: the repair clears
are a join of ``repair_orders`` with the catalogue and the codes each vehicle reported.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Final

import duckdb
import polars as pl

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

_SCHEMA: Final = {"vehicle_id": pl.String, "code": pl.String, "first_seen": pl.Date,
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
    rel = con.sql(_ACTIVE_SQL, params={"now": now, "vehicles": sorted(vehicles or ()),
                                       "all": vehicles is None})
    active = rel.pl() if rel is not None else pl.DataFrame(schema=_SCHEMA)
    active = active.cast({k: v for k, v in _SCHEMA.items() if k != "last_seen"})
    return (active.join(catalog_frame(), on="code", how="left")
            .sort("vehicle_id", "code"))

"""Whether a day's materialised features still describe the store.

Scoring a million vehicles from telemetry means re-reading the scoring window's raw rows every
run; reading the rows the ``features`` flow already materialised is what makes it cheap. That
is only safe while nothing those rows were computed from has changed since: telemetry can land
late (a gateway's backlog after days offline), a vehicle can be erased, a repair order or a
region forecast imported, the feature code upgraded.

So every materialised day gets a **digest of its inputs**, taken on the same connection before
its features are computed, and recorded beside them (``daily_feature_inputs``). Scoring takes
the digest again and reads a day's materialised rows only when the two are equal. The digest
of day D covers exactly what D's features read:

* telemetry stamped in D and the :data:`~pipeline.features.daily.LOOKBACK_DAYS` days before it
  (row count and the exact integer sum of the timestamps: landed rows are never updated, only
  appended or erased, so either changes it);
* fault codes stamped up to the end of D (active codes look back without limit);
* the whole repair-order table, region forecasts and each vehicle's region (small tables);
* the source of :mod:`pipeline.features` itself, so an upgrade that changes a feature makes
  every earlier day stale rather than scoring a new model on old formulas.

A digest is computed per day from one grouped scan per table, never per vehicle.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import duckdb

from pipeline.features.daily import LOOKBACK_DAYS
from pipeline.features.daily_sql import UTC_DAY

_DAY: Final = dt.timedelta(days=1)
_TELEMETRY_BY_DAY: Final = (
    f"SELECT {UTC_DAY} AS day, count(*), sum(epoch_us(ts)::HUGEINT)::VARCHAR FROM telemetry"
    " WHERE ts >= $since AND ts <= $until GROUP BY ALL")
_CODES_BY_DAY: Final = (
    f"SELECT {UTC_DAY} AS day, count(*), sum(epoch_us(ts)::HUGEINT)::VARCHAR,"
    " bit_xor(hash(vehicle_id, code, status, cleared)) FROM dtc_events WHERE ts <= $until"
    " GROUP BY ALL")
_TABLE_DIGESTS: Final = (
    "SELECT (SELECT count(*)::VARCHAR || ':' || coalesce(bit_xor(hash(order_id, vehicle_id,"
    " opened_at, component, kind))::VARCHAR, '') FROM repair_orders),"
    " (SELECT count(*)::VARCHAR || ':' || coalesce(bit_xor(hash(region, day, min_temp_c))"
    "::VARCHAR, '') FROM region_forecasts),"
    " (SELECT count(*)::VARCHAR || ':' || coalesce(bit_xor(hash(vehicle_id, lower(region)))"
    "::VARCHAR, '') FROM vehicles)")


@functools.cache
def feature_code_digest() -> str:
    """A digest of the source of every module of :mod:`pipeline.features` (read once)."""
    sha = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        sha.update(path.name.encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()[:16]


def input_digests(con: duckdb.DuckDBPyConnection, days: Sequence[dt.date]
                  ) -> dict[dt.date, str]:
    """The digest of each of ``days``' inputs, as the store holds them now."""
    if not days:
        return {}
    first, last = min(days), max(days)
    since = dt.datetime.combine(first - LOOKBACK_DAYS * _DAY, dt.time.min, tzinfo=dt.UTC)
    until = dt.datetime.combine(last, dt.time.max, tzinfo=dt.UTC)
    params = {"since": since, "until": until}
    telemetry = {d: (n, s) for d, n, s in con.execute(_TELEMETRY_BY_DAY, params).fetchall()}
    codes = sorted(con.execute(_CODES_BY_DAY, {"until": until}).fetchall())
    # fetchall, not fetchone: DuckDB 2 refuses the connection's next relation (con.sql) while
    # an execute()'s result is not read to its end, and scoring runs queries right after this
    rows = con.execute(_TABLE_DIGESTS).fetchall()
    tables = "|".join(str(part) for part in (rows[0] if rows else ()))
    fixed = f"{tables}|{feature_code_digest()}"
    return {d: _digest(d, telemetry, codes, fixed) for d in days}


def fresh_days(con: duckdb.DuckDBPyConnection, days: Sequence[dt.date]) -> set[dt.date]:
    """Those of ``days`` whose materialised features were computed from what the store
    holds now (a day never materialised, or materialised before a change, is not fresh)."""
    wanted = sorted(set(days))
    if not wanted:
        return set()
    recorded = dict(con.execute(
        "SELECT day, inputs FROM daily_feature_inputs WHERE list_contains(?, day)",
        [wanted]).fetchall())
    if not recorded:
        return set()
    now = input_digests(con, sorted(recorded))
    return {d for d, digest in recorded.items() if now.get(d) == digest}


def _digest(day: dt.date, telemetry: dict[dt.date, tuple[int, str]],
            codes: list[tuple[dt.date, int, str, int]], fixed: str) -> str:
    """One day's digest: its lookback's telemetry, the fault codes up to it, the rest."""
    rows, stamps = 0, 0
    for back in range(LOOKBACK_DAYS + 1):
        n, s = telemetry.get(day - back * _DAY, (0, "0"))
        rows, stamps = rows + n, stamps + int(s)
    c_rows, c_stamps, c_xor = 0, 0, 0
    for d, n, s, x in codes:
        if d > day:
            break
        c_rows, c_stamps, c_xor = c_rows + n, c_stamps + int(s), c_xor ^ int(x)
    return f"t{rows}:{stamps}|c{c_rows}:{c_stamps}:{c_xor}|{fixed}"

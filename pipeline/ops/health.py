"""Health of the long-running services (edge agents, ingest, delivery), judged from the store.

Edge agents and ingest run for months and are not flows, so a scheduled check watches what
they leave behind: agents' health reports (``edge_health``), the newest landed message
(``ingested_messages``), the snapshot file readers depend on, dead letters, the CRM outbox and
held leads (leads that may not be sent: no customer on record, no consent to contact), and
vehicles whose bus reports another VIN than the register's (a gateway moved to another car).
When given a way to read the broker's ``$SYS`` counters it also watches the one loss nothing
else shows: messages the broker acknowledged and then dropped (a full queue, an oversize
publish); any new drop fails the check.
Each check compares one number with one threshold and says in words what is wrong. Every
run is recorded in ``health_checks``; growth checks (dead letters, dead outbox rows) compare
with the totals the previous run recorded, so an old problem someone already saw does not
fail every later run.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb

from pipeline.broker.counters import BrokerCounters
from pipeline.errors import PipelineError
from pipeline.fleet.vin_check import vin_mismatches

BROKER_RESTART_TOLERANCE_S: Final = 60.0
"""Two checks whose broker start times (check time minus uptime) differ by more than this saw
two broker lives, and the drop counter restarted at 0 in between ($SYS uptime is only as fresh
as the broker's sys_interval, 10 s by default)."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a service counts as unhealthy (seconds, rows)."""

    heartbeat_max_age_s: float = 900.0
    ingest_max_lag_s: float = 900.0
    snapshot_max_age_s: float = 1800.0
    dead_letter_max_growth: float = 0.0
    outbox_max_pending: float = 100.0
    outbox_dead_max_growth: float = 0.0
    broker_dropped_max_growth: float = 0.0
    held_leads_max_growth: float = 0.0
    vin_mismatches_max: float = 0.0


@dataclass(frozen=True, slots=True)
class Check:
    """One measured number against its threshold."""

    name: str
    value: float | None
    threshold: float
    healthy: bool
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check of one run."""

    checked_at: dt.datetime
    checks: tuple[Check, ...]

    @property
    def unhealthy(self) -> tuple[Check, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if not c.healthy)

    def summary(self) -> str:
        """One line per failed check (empty when all are healthy)."""
        return "; ".join(c.message for c in self.unhealthy)


def check_health(con: duckdb.DuckDBPyConnection, *, now: dt.datetime | None = None,
                 snapshot_path: str | Path | Sequence[str | Path] | None = None,
                 thresholds: Thresholds = Thresholds(),
                 broker: Callable[[], BrokerCounters] | None = None) -> HealthReport:
    """Run every check on ``con`` (a serving store, or the landing store itself).

    ``broker`` reads the broker's counters (e.g. :func:`pipeline.broker.counters.
    read_broker_counters` with the backend's login); when given, drops since the last check
    fail it, and so does a broker whose counters cannot be read.
    """
    at = now or dt.datetime.now(dt.UTC)
    checks = [_heartbeats(con, at, thresholds.heartbeat_max_age_s),
              _ingest_lag(con, at, thresholds.ingest_max_lag_s)]
    if snapshot_path is not None:
        checks.append(_oldest_snapshot(snapshot_path, at, thresholds.snapshot_max_age_s))
    checks += [
        _growth(con, "dead_letters", "SELECT count(*) FROM dead_letters",
                thresholds.dead_letter_max_growth, "dead letters"),
        _outbox_pending(con, at, thresholds.outbox_max_pending),
        _growth(con, "outbox_dead", "SELECT count(*) FROM outbox WHERE status = 'dead'",
                thresholds.outbox_dead_max_growth, "dead outbox rows (leads the CRM never got)"),
        _held_leads(con, thresholds.held_leads_max_growth),
        _vin_mismatches(con, thresholds.vin_mismatches_max),
    ]
    if broker is not None:
        checks.append(_broker_drops(con, at, broker, thresholds.broker_dropped_max_growth))
    return HealthReport(at, tuple(checks))


def record_health(con: duckdb.DuckDBPyConnection, report: HealthReport) -> None:
    """Keep ``report`` in ``health_checks`` (the next run's baseline for growth checks)."""
    con.executemany(
        "INSERT INTO health_checks (checked_at, check_name, value, threshold, healthy, message,"
        " detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [[report.checked_at, c.name, c.value, c.threshold, c.healthy, c.message,
          json.dumps(c.detail)] for c in report.checks])


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    rows = con.execute(sql, params or []).fetchall()
    return rows[0][0] if rows else None


def _heartbeats(con: duckdb.DuckDBPyConnection, now: dt.datetime, limit: float) -> Check:
    rows = con.execute(
        "SELECT vehicle_id, epoch(CAST(? AS TIMESTAMPTZ) - max(ts)) AS age"
        " FROM edge_health GROUP BY vehicle_id HAVING arg_max(online, ts) ORDER BY age DESC",
        [now]).fetchall()
    stale = [(v, age) for v, age in rows if age > limit]
    worst = float(rows[0][1]) if rows else None
    if not stale:
        text = (f"{len(rows)} online agents reported within {limit:.0f} s" if rows
                else "no online agent has reported (none running, or all said goodbye)")
        return Check("heartbeat_age", worst, limit, True, text)
    names = ", ".join(f"{v} ({age:.0f} s)" for v, age in stale[:5])
    more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
    return Check("heartbeat_age", worst, limit, False,
                 f"edge agents silent for longer than {limit:.0f} s without going offline: "
                 f"{names}{more}", {"stale": [v for v, _ in stale]})


def _ingest_lag(con: duckdb.DuckDBPyConnection, now: dt.datetime, limit: float) -> Check:
    lag = _one(con, "SELECT epoch(CAST(? AS TIMESTAMPTZ) - max(landed_at))"
                    " FROM ingested_messages", [now])
    if lag is None:
        return Check("ingest_lag", None, limit, True, "no message has landed yet")
    healthy = lag <= limit
    text = (f"ingest landed its newest message {lag:.0f} s ago" if healthy else
            f"ingest lag {lag:.0f} s exceeds {limit:.0f} s: nothing landed since then "
            "(is `fleetcare ingest` running and connected?)")
    return Check("ingest_lag", float(lag), limit, healthy, text)


def _oldest_snapshot(snapshots: str | Path | Sequence[str | Path], now: dt.datetime,
                     limit: float) -> Check:
    """The snapshot-age check of the worst snapshot: with several ingest workers, each
    publishing its own, the flows read stale data as soon as any one of them is stale."""
    paths = [snapshots] if isinstance(snapshots, str | Path) else list(snapshots)
    checks = [_snapshot_age(Path(p), now, limit) for p in paths]
    return max(checks, key=lambda c: math.inf if c.value is None else c.value)


def _snapshot_age(path: Path, now: dt.datetime, limit: float) -> Check:
    if not path.is_file():
        return Check("snapshot_age", None, limit, False,
                     f"no landing snapshot at {path} (start ingest with --snapshot)")
    written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    age = (now - written).total_seconds()
    healthy = age <= limit
    text = (f"snapshot {path.name} is {age:.0f} s old" if healthy else
            f"snapshot {path} is {age:.0f} s old, older than {limit:.0f} s "
            "(ingest's --maintenance-interval, or ingest stopped)")
    return Check("snapshot_age", age, limit, healthy, text)


def _growth(con: duckdb.DuckDBPyConnection, name: str, sql: str, limit: float,
            what: str) -> Check:
    total = int(_one(con, sql) or 0)
    before = _one(con, "SELECT CAST(detail->>'$.total' AS BIGINT) FROM health_checks"
                       " WHERE check_name = ? ORDER BY checked_at DESC LIMIT 1", [name])
    if before is None:
        return Check(name, 0.0, limit, True, f"{total} {what} (first check: baseline)",
                     {"total": total})
    growth = float(total - int(before))
    healthy = growth <= limit
    text = (f"{growth:.0f} new {what} since the last check" if healthy else
            f"{growth:.0f} new {what} since the last check, more than {limit:.0f} "
            f"({total} in all)")
    return Check(name, growth, limit, healthy, text, {"total": total})


def _held_leads(con: duckdb.DuckDBPyConnection, limit: float) -> Check:
    """Held leads now, by reason; more than the previous check recorded fails (a lead held
    since then has no one to call until the master data is fixed)."""
    by_reason = {str(r): int(n) for r, n in con.execute(
        "SELECT coalesce(hold_reason, 'unknown'), count(*) FROM leads WHERE state = 'held'"
        " GROUP BY 1 ORDER BY 1").fetchall()}
    total = sum(by_reason.values())
    detail: dict[str, Any] = {"total": total, "by_reason": by_reason}
    reasons = ", ".join(f"{r} {n}" for r, n in by_reason.items()) or "none"
    before = _one(con, "SELECT CAST(detail->>'$.total' AS BIGINT) FROM health_checks"
                       " WHERE check_name = 'held_leads' ORDER BY checked_at DESC LIMIT 1")
    growth = float(total - int(before)) if before is not None else 0.0
    if growth <= limit:
        first = " (first check: baseline)" if before is None else ""
        return Check("held_leads", growth, limit, True,
                     f"{total} held leads ({reasons}){first}", detail)
    return Check("held_leads", growth, limit, False,
                 f"{growth:.0f} more held leads since the last check ({total} held: {reasons}):"
                 " no customer on record, no consent to contact, another VIN on the bus or "
                 "stale evidence; see fleetcare leads list --held for each lead's reason and "
                 "what to fix", detail)


def _vin_mismatches(con: duckdb.DuckDBPyConnection, limit: float) -> Check:
    """Vehicles whose newest bus VIN is not the registered one. Not a growth check: the data
    of such a vehicle is another car's for as long as the mismatch lasts, so every run fails
    until the register or the gateway is put right."""
    found = vin_mismatches(con)
    detail: dict[str, Any] = {"vehicles": [
        {"vehicle_id": m.vehicle_id, "registered": m.registered_vin, "on_bus": m.bus_vin,
         "vin_source": m.vin_source, "seen_at": m.seen_at.isoformat()} for m in found]}
    if len(found) <= limit:
        return Check("vin_mismatch", float(len(found)), limit, True,
                     f"{len(found)} vehicles whose bus reports another VIN than the register",
                     detail)
    names = ", ".join(f"{m.vehicle_id} (registered {m.registered_vin}, bus {m.bus_vin})"
                      for m in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return Check("vin_mismatch", float(len(found)), limit, False,
                 f"{len(found)} vehicles whose bus reports another VIN than the register, "
                 f"their leads held: {names}{more}; was a gateway moved to another car? Fix "
                 "the register (fleetcare fleet import) or the gateway", detail)


def _outbox_pending(con: duckdb.DuckDBPyConnection, now: dt.datetime, limit: float) -> Check:
    pending = int(_one(con, "SELECT count(*) FROM outbox WHERE status = 'pending'"
                            " AND next_attempt_at <= ?", [now]) or 0)
    healthy = pending <= limit
    text = (f"{pending} outbox rows due for delivery" if healthy else
            f"outbox backlog: {pending} rows due for delivery, more than {limit:.0f} "
            "(is the CRM reachable? is deliver_leads running?)")
    return Check("outbox_pending", float(pending), limit, healthy, text)


def _broker_drops(con: duckdb.DuckDBPyConnection, now: dt.datetime,
                  read: Callable[[], BrokerCounters], limit: float) -> Check:
    """Messages the broker dropped since the last check (or since it started, if it restarted
    in between or this is the first check: a drop is never a baseline to get used to).

    Without a watcher (:class:`pipeline.broker.counters.DropWatcher`) a counter that has not
    changed for a minute cannot be read at all: that is healthy as far as can be seen, and
    the message says what cannot be seen.
    """
    name = "broker_dropped"
    try:
        counters = read()
    except PipelineError as exc:
        return Check(name, None, limit, False, f"cannot read the broker's drop counter: {exc}")
    detail: dict[str, Any] = {"broker_started_at": counters.started_at.isoformat(),
                              "uptime_s": counters.uptime_s, "version": counters.version,
                              "stored": counters.stored, "watched": counters.watched}
    row = con.execute("SELECT detail FROM health_checks WHERE check_name = ?"
                      " ORDER BY checked_at DESC LIMIT 1", [name]).fetchone()
    before = json.loads(row[0]) if row else {}
    same_life = "broker_started_at" in before and abs(
        (counters.started_at - dt.datetime.fromisoformat(before["broker_started_at"]))
        .total_seconds()) <= BROKER_RESTART_TOLERANCE_S
    if counters.dropped is None:
        if same_life and "total" in before:
            detail["total"] = before["total"]  # unchanged for a minute at least
        return Check(name, 0.0, limit, True,
                     "the broker's drop counter has not changed in the last minute (no "
                     "watcher keeps it: a change between checks that long ago is not seen)",
                     detail)
    detail["total"] = counters.dropped
    baseline, since = 0, f"since the broker started {counters.uptime_s} s ago"
    if same_life and before.get("total") is not None and int(before["total"]) <= \
            counters.dropped:
        baseline, since = int(before["total"]), "since the last check"
    growth = float(counters.dropped - baseline)
    if growth <= limit:
        return Check(name, growth, limit, True,
                     f"the broker dropped {growth:.0f} messages {since} ({counters.dropped} "
                     "since it started)", detail)
    return Check(name, growth, limit, False,
                 f"the broker dropped {growth:.0f} acknowledged messages {since}: a full "
                 "session queue (max_queued_messages/_bytes; is ingest running?); what the "
                 "agents no longer hold is lost", detail)

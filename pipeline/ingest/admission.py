"""Backend checks before a message may land: is its vehicle registered, is it within its rate?

The broker's ACL (``fleetcare pki broker-config``) already keeps a vehicle off other
vehicles' topics, and :mod:`pipeline.ingest.landing` dead-letters a payload whose ``vehicle_id``
differs from its topic's. What is left is decided here, once per message and in constant
time, so the bulk path never loops over rows in Python:

* **Registered vehicles only.** A vehicle id that is not in the store's ``vehicles`` table
  is refused. The known ids are cached; a miss reloads them at most every ``refresh_s``
  seconds, so a vehicle registered while ingest runs is admitted within seconds, and a
  stream of unknown ids costs one query per interval, not one per message.
* **A per-vehicle rate limit**, as a token bucket charged in rows (``max(1, rows)`` per
  message): each vehicle may send ``rows_per_s`` on average and ``burst_rows`` at once. A
  runaway or hostile device then fills dead letters instead of the telemetry table, and the
  other vehicles, with buckets of their own, are unaffected.
* **Catch-up after ingest's own downtime.** While ingest is away, the broker keeps every
  vehicle's messages for its persistent session and hands them over at once when it returns;
  on arrival time alone that backlog would look like a flood. So a limiter started after a
  downtime of ``D`` seconds (since the store's last landed message) grants each vehicle, once,
  ``rows_per_s * min(D, catch_up_s)`` rows on top of its burst: exactly what it may have
  sent meanwhile. A vehicle's *own* outage (its gateway spooled while offline) gets no such
  credit: nothing tells ingest how long a vehicle was away but the timestamps the vehicle
  itself claims; its excess is dead-lettered, to be replayed.

Nothing is dropped: a refused message is dead-lettered with the reason, acknowledged after
the commit like any other, and counted in the ingest's stats. The clock is injectable, so
the limiter is tested with a fake one.

DuckDB lets only the ingest process open the landing store while it runs, so vehicles are
registered through ingest itself: :func:`register_vehicles` on its connection, or register
files that ingest re-reads when they change (a newer DMS export replacing the old one): the
``vehicles.csv`` that ``fleetcare fleet import`` reads (the same parser, :mod:`pipeline.fleet`;
the older ``vehicle_id,model,region`` file is still taken) and optionally ``customers.csv``,
so that ingest's own urgent leads know whom to call and whether they may.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from edge.wire import ContractError, contract
from pipeline.errors import TerminalPipelineError

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

Clock = Callable[[], float]

UNKNOWN_VEHICLE: Final = "unknown_vehicle"
RATE_LIMIT: Final = "rate_limit"
REFRESH_S: Final = 5.0
"""Shortest interval between two reloads of the registered vehicles on a miss."""
PRUNE_S: Final = 60.0
"""Shortest interval between two sweeps for idle buckets (a sweep visits every bucket)."""


class FleetFileError(TerminalPipelineError):
    """The fleet register file cannot be read or holds an invalid line."""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A per-vehicle token bucket: ``rows_per_s`` sustained, up to ``burst_rows`` at once.

    Raises:
        ValueError: a value is not a positive finite number.
    """

    rows_per_s: float
    burst_rows: float
    catch_up_s: float = 3600.0
    """Longest ingest downtime whose backlog each vehicle may send on top of its burst."""

    def __post_init__(self) -> None:
        for name in ("rows_per_s", "burst_rows"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"rate limit {name} must be a positive number, got {value}")
        if not (math.isfinite(self.catch_up_s) and self.catch_up_s >= 0):
            raise ValueError(f"rate limit catch_up_s must be zero or a positive number, got "
                             f"{self.catch_up_s}")


DEFAULT_RATE_LIMIT: Final = RateLimit(rows_per_s=20_000.0, burst_rows=1_200_000.0)
"""Generous for a real vehicle: a fully loaded CAN bus is about 4,500 frames/s, and the
burst lets a one-minute outage's backlog through at once."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a message may not land: ``check`` names the check, ``reason`` is for dead letters."""

    check: str
    reason: str
    rows: int


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    full_since: float
    """When the bucket was last full: the start of the vehicle's current busy spell."""
    spent: float
    """Rows admitted since ``full_since``."""
    credit: float = 0.0
    """Catch-up rows left (see the module docstring), spent before the bucket's tokens."""
    granted: float = 0.0
    """Catch-up rows this bucket was given."""


class RateLimiter:
    """Token buckets per vehicle; :meth:`admit` is O(1) per message.

    A message costs ``max(1, rows)`` tokens, but never more than ``burst_rows``, so one large
    message still lands when the bucket is full. A refused message costs nothing: a flood
    cannot keep its vehicle locked out longer than its excess.

    Args:
        limit: the bucket's size and refill rate, and the longest catch-up.
        clock: monotonic seconds (injectable for tests).
        downtime_s: how long ingest was away before this limiter started; each vehicle's
            first bucket gets ``rows_per_s * min(downtime_s, limit.catch_up_s)`` rows of
            catch-up credit, once per limiter (a vehicle forgotten as idle does not get it
            again).
    """

    def __init__(self, limit: RateLimit, clock: Clock = time.monotonic, *,
                 downtime_s: float = 0.0) -> None:
        self.limit, self._clock = limit, clock
        self.catch_up_rows = limit.rows_per_s * min(max(downtime_s, 0.0), limit.catch_up_s)
        self._buckets: dict[str, _Bucket] = {}
        self._credited: set[str] = set()
        self._pruned_at = clock()

    def admit(self, vehicle_id: str, rows: int) -> Refusal | None:
        """Charge ``vehicle_id`` for ``rows``; a :class:`Refusal` when it is over its limit."""
        now, limit = self._clock(), self.limit
        cost = min(float(max(1, rows)), limit.burst_rows)
        bucket = self._buckets.get(vehicle_id)
        if bucket is None:
            bucket = self._buckets[vehicle_id] = _Bucket(limit.burst_rows, now, now, 0.0)
            if self.catch_up_rows and vehicle_id not in self._credited:
                self._credited.add(vehicle_id)
                bucket.credit = bucket.granted = self.catch_up_rows
        else:
            level = bucket.tokens + (now - bucket.updated) * limit.rows_per_s
            if level >= limit.burst_rows:
                bucket.full_since = now - (level - limit.burst_rows) / limit.rows_per_s
                bucket.spent, level = 0.0, limit.burst_rows
            bucket.tokens, bucket.updated = level, now
        if bucket.tokens + bucket.credit >= cost:
            from_credit = min(bucket.credit, cost)
            bucket.credit -= from_credit
            bucket.tokens -= cost - from_credit
            bucket.spent += cost
            return None
        elapsed = now - bucket.full_since
        catch_up = (f", beyond its catch-up of {bucket.granted:,.0f} rows after ingest's "
                    f"downtime" if bucket.granted else "")
        return Refusal(RATE_LIMIT, (
            f"rate limit: vehicle {vehicle_id!r} sent {bucket.spent + cost:,.0f} rows in "
            f"{elapsed:,.1f} s (this message's {rows:,} included), over its limit of "
            f"{_number(limit.rows_per_s)} rows/s (burst {_number(limit.burst_rows)}){catch_up}"),
            rows)

    def maybe_prune(self) -> int:
        """:meth:`prune`, at most every :data:`PRUNE_S` seconds; returns how many it forgot."""
        if self._clock() - self._pruned_at < PRUNE_S:
            return 0
        return self.prune()

    def prune(self) -> int:
        """Forget vehicles whose bucket is full again (idle); returns how many.

        Keeps memory bounded by the vehicles active within the last ``burst/rate`` seconds
        (an idle vehicle's catch-up credit goes with its bucket: its backlog is over).
        """
        now, limit = self._clock(), self.limit
        self._pruned_at = now
        idle = [v for v, b in self._buckets.items()
                if b.tokens + (now - b.updated) * limit.rows_per_s >= limit.burst_rows]
        for vehicle_id in idle:
            del self._buckets[vehicle_id]
        return len(idle)


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


class VehicleRegister:
    """The set of registered vehicle ids, reloaded on a miss at most every ``refresh_s``.

    Args:
        load: returns every registered vehicle id (for example :func:`store_loader`).
        refresh_s: shortest interval between two reloads.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, load: Callable[[], Iterable[str]], refresh_s: float = REFRESH_S,
                 clock: Clock = time.monotonic) -> None:
        self._load, self.refresh_s, self._clock = load, refresh_s, clock
        self._known = frozenset(load())
        self._loaded_at = clock()

    def __len__(self) -> int:
        return len(self._known)

    def known(self, vehicle_id: str) -> bool:
        """Whether ``vehicle_id`` is registered (reloading first on a miss, if due)."""
        if vehicle_id in self._known:
            return True
        now = self._clock()
        if now - self._loaded_at < self.refresh_s:
            return False
        self._loaded_at = now
        try:
            self._known = frozenset(self._load())
        except Exception:
            # The old set stays in force; the next miss after refresh_s tries again.
            log.exception("could not reload the registered vehicles; keeping %d",
                          len(self._known))
        return vehicle_id in self._known


def unknown_vehicle_reason(vehicle_id: str) -> str:
    """The dead-letter reason for a message of a vehicle that is not registered."""
    return (f"unknown vehicle: {vehicle_id!r} is not registered in the vehicles table "
            f"(register it, then replay with fleetcare deadletter replay)")


class Admission:
    """The checks a valid message passes before it may land (either may be switched off)."""

    def __init__(self, register: VehicleRegister | None, limiter: RateLimiter | None) -> None:
        self.register, self.limiter = register, limiter

    def refuse(self, vehicle_id: str, rows: int) -> Refusal | None:
        """None when the message may land, else why not (registration is checked first,
        so unknown vehicles never get a bucket)."""
        if self.register is not None and not self.register.known(vehicle_id):
            return Refusal(UNKNOWN_VEHICLE, unknown_vehicle_reason(vehicle_id), rows)
        if self.limiter is not None:
            return self.limiter.admit(vehicle_id, rows)
        return None


@dataclass(frozen=True, slots=True)
class Vehicle:
    """One line of the fleet register."""

    vehicle_id: str
    model: str
    region: str


def seconds_since_last_landing(con: duckdb.DuckDBPyConnection) -> float | None:
    """Wall-clock seconds since the store last landed a message; None for an empty store.

    Ingest's downtime, as far as the store can tell (an idle fleet looks the same, and is
    granted the same catch-up; see the module docstring).
    """
    row = con.execute("SELECT epoch(now()) - epoch(max(landed_at)) FROM ingested_messages"
                      ).fetchone()
    return None if row is None or row[0] is None else max(0.0, float(row[0]))


def registered_ids(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every vehicle id in the store's ``vehicles`` table."""
    return {str(r[0]) for r in con.execute("SELECT vehicle_id FROM vehicles").fetchall()}


def register_vehicles(con: duckdb.DuckDBPyConnection, vehicles: Sequence[Vehicle]) -> int:
    """Add vehicles to the ``vehicles`` table, or update their model and region.

    Customer and service-centre assignments of vehicles already there are kept.
    Returns how many lines were given.
    """
    # Imported here so the CLI can read this module's defaults without loading Arrow.
    import pyarrow as pa

    from pipeline.store.connection import transaction

    if not vehicles:
        return 0
    latest = {v.vehicle_id: v for v in vehicles}  # one upsert may not touch a key twice
    table = pa.table({
        "vehicle_id": pa.array(list(latest), pa.string()),
        "model": pa.array([v.model for v in latest.values()], pa.string()),
        "region": pa.array([v.region for v in latest.values()], pa.string()),
    })
    with transaction(con):
        con.register("_vehicles", table)
        try:
            con.execute("INSERT INTO vehicles (vehicle_id, model, region) SELECT vehicle_id, "
                        "model, region FROM _vehicles ON CONFLICT (vehicle_id) DO UPDATE SET "
                        "model = excluded.model, region = excluded.region")
        finally:
            con.unregister("_vehicles")
    return len(latest)


def read_fleet_file(path: Path) -> list[Vehicle]:
    """The vehicles of a CSV fleet register with the header ``vehicle_id,model,region``.

    Raises:
        FleetFileError: the file cannot be read, lacks a column, or a line is invalid.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"vehicle_id", "model", "region"} - set(reader.fieldnames or ())
            if missing:
                raise FleetFileError(f"{path}: the header lacks {sorted(missing)} "
                                     "(expected vehicles.csv as `fleetcare fleet import` "
                                     "reads it, or the older vehicle_id,model,region)")
            return [_vehicle(path, reader.line_num, row) for row in reader]
    except OSError as exc:
        raise FleetFileError(f"cannot read the fleet register {path}: {exc}") from exc


def _vehicle(path: Path, line: int, row: dict[str, str]) -> Vehicle:
    vehicle = Vehicle(*((row.get(k) or "").strip()
                        for k in ("vehicle_id", "model", "region")))
    try:
        contract.telemetry_topic(vehicle.vehicle_id)  # validates the id
    except ContractError as exc:
        raise FleetFileError(f"{path}, line {line}: {exc}") from exc
    if not (vehicle.model and vehicle.region):
        raise FleetFileError(f"{path}, line {line}: model and region must not be empty")
    return vehicle


def store_loader(con: duckdb.DuckDBPyConnection, fleet_file: Path | None = None,
                 customers_file: Path | None = None) -> Callable[[], set[str]]:
    """A :class:`VehicleRegister` loader: the store's ids, after importing ``customers_file``
    and ``fleet_file`` whenever one has changed (by modification time and size).

    The first call imports the files and raises :class:`FleetFileError` if one is bad; later
    calls raise too, and :class:`VehicleRegister` keeps the previous set and logs why (a bad
    file is never half applied: :func:`pipeline.fleet.import_fleet` applies all or nothing).
    """
    files = [(kind, path) for kind, path in (("customers", customers_file),
                                             ("vehicles", fleet_file)) if path is not None]
    last_seen: dict[str, tuple[int, int]] = {}  # each file's (mtime, size) when last imported

    def load() -> set[str]:
        for kind, path in files:
            try:
                stat = path.stat()
            except OSError as exc:
                raise FleetFileError(f"cannot read the {kind} register {path}: "
                                     f"{exc}") from exc
            stamp = (stat.st_mtime_ns, stat.st_size)
            if last_seen.get(kind) != stamp:
                count = import_register_file(con, kind, path)
                log.info("registered %d %s from %s", count, kind, path)
                last_seen[kind] = stamp
        return registered_ids(con)

    return load


def import_register_file(con: duckdb.DuckDBPyConnection, kind: str, path: Path) -> int:
    """Import one register file into ingest's store; returns how many rows it holds.

    A ``vehicles`` file with the old ``vehicle_id,model,region`` header is read by
    :func:`read_fleet_file`; any other goes through :func:`pipeline.fleet.import_fleet`
    (references to customers and centres unchecked: those live in the serving store).

    Raises:
        FleetFileError: the file is unreadable or holds a bad line (the first few named).
    """
    from pipeline.fleet import VEHICLES, FleetImportError, import_fleet

    if kind == "vehicles" and not set(VEHICLES.names) <= _header(path):
        return register_vehicles(con, read_fleet_file(path))
    try:
        report = import_fleet(con, {kind: path}, references=False)
    except FleetImportError as exc:
        shown = "; ".join(str(p) for p in exc.problems[:5])
        more = f" (and {len(exc.problems) - 5} more)" if len(exc.problems) > 5 else ""
        raise FleetFileError(f"{exc}: {shown}{more}") from exc
    counts = next(iter(report.tables.values()))
    return counts.inserted + counts.updated + counts.unchanged


def _header(path: Path) -> set[str]:
    """The column names of a CSV file's first line (empty when it cannot be read)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return {h.strip() for h in next(csv.reader(handle), [])}
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()

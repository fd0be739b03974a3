"""MQTT to DuckDB, exactly once: acknowledge a message only after its rows are committed.

The subscriber keeps a persistent session (``clean_session=False``, fixed client id) and
acknowledges QoS 1 messages by hand, so a message is either committed and acked, or
unacked and redelivered by the broker after a reconnect or restart. Redelivery is
harmless because landing skips every ``msg_id`` already in ``ingested_messages``.

One thread owns both a session's MQTT socket and its DuckDB connection
(:class:`pipeline.ingest.session.Session`): it runs paho's ``loop()`` itself (through
:class:`pipeline.ingest.client.IngestClient`, which reads the socket in large chunks and
parses PUBLISH packets without paho's per-message objects), decodes each message as it
arrives, lands a batch when it is full or old enough, then acks the batch in
arrival order with one write (MQTT requires PUBACKs in PUBLISH order). Handing
messages from paho's network thread to a writer thread was measured three times slower on
a 2-core machine (280k against 840k rows/s): both threads are Python-bound and spend their
time taking the GIL from each other. While a batch lands, nobody reads the socket, so TCP
pushes back on the broker instead of anything being dropped. The ``after_commit`` hook and
the periodic ``maintenance`` (exports, snapshots) run on that thread too, between batches.

``mqtt_client="stock"`` (setting ``FLEETCARE_PIPELINE__MQTT_CLIENT=stock``) runs the same
loop on paho's own ``Client`` instead: every PUBLISH goes through ``on_message`` and each
PUBACK is paho's ``ack(mid, qos)``, sent after the commit like the fast client's batch. It
is slower and relies on nothing but paho's public API, so it is the way out when a paho
upgrade changes the internals the fast client overrides (tests/pipeline/test_paho_internals.py
names them).

After each commit (and its PUBACKs) the same thread publishes the batch's receipts, one per
vehicle at QoS 1 (:mod:`pipeline.ingest.receipts`): the agents delete a spooled message on
its receipt, never on the broker's PUBACK, so a message the broker acknowledged and then lost
is sent again. The receipts leave after the commit and never before: an id in a receipt is in
the store.

Critical faults skip the queue. A fault-code message reporting a critical code (the
``critical_codes`` the leads' catalogue names) lands its batch at once, whatever its window.
And since the broker keeps one ordered queue per session, fault codes get a session of their
own (client id ``<client id>-faults``, topic filter ``fleetcare/v1/vehicles/+/dtc``) served by
a second thread with its own DuckDB cursor: under a backlog of telemetry, a critical fault
waits neither in the broker's queue behind the backlog, nor in the bulk session's socket
buffers, nor for the bulk batch being landed. That thread is idle but for fault codes, which
are few, so it does not cost the bulk path the GIL contention a network/writer split would.
The bulk session unsubscribes from the fault-code filter at every connect (a persistent
session keeps its subscriptions); what was already queued for it still lands there, and a
copy landed by both sessions is a duplicate like any redelivery. Behind a broker that takes
the client id from the certificate (the generated mutual-TLS broker), one certificate can hold
one session only, so with a client certificate the fault-code session is off by default and
critical faults only skip their batch window.

The broker must let a whole batch be in flight unacknowledged: mosquitto's default of 20
in-flight messages per client would cap a batch at 20 messages per ``flush_interval_s``.
:class:`pipeline.broker.harness.EmbeddedBroker` configures 10,000.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Final, get_args

import duckdb

from edge.wire import contract
from pipeline.broker.auth import BackendTls, MqttCredentials, parse_broker_url, redact_url
from pipeline.config import MqttClientKind
from pipeline.errors import BrokerError, TerminalPipelineError
from pipeline.foreground import run_until_terminated
from pipeline.ingest.admission import (
    DEFAULT_RATE_LIMIT,
    REFRESH_S,
    Admission,
    RateLimit,
    RateLimiter,
    VehicleRegister,
    seconds_since_last_landing,
    store_loader,
)
from pipeline.ingest.columnar import warm_up
from pipeline.ingest.session import BatchRule, Connection, Priority, Session
from pipeline.ingest.stats import IngestStats, StatsBoard
from pipeline.ingest.writer import AfterCommit, BatchWriter, Maintenance
from pipeline.store import connection as store

__all__ = ["FAULT_TOPICS", "INFO_TOPICS", "AfterCommit", "IngestStats", "Ingestor", "Maintenance",
           "RateLimit", "run_forever"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
FLUSH_ROWS: Final = 122_880
"""DuckDB's row-group size: a transaction appending at least this many rows writes them
straight into the database file and its commit is nearly free; below it, every row also
goes through the write-ahead log (measured: commit 33 µs against 1.3 µs per 100 rows)."""
FLUSH_BYTES: Final = 32 * 1024 * 1024
"""Payload bytes a batch may hold before it lands, whatever its row count. A batch of
telemetry reaches :data:`FLUSH_ROWS` at about 10 MB of payload (100-signal messages), so
this stays out of the way of normal traffic; it bounds batches whose bytes carry few rows
(dead letters, large fault-code or truth messages), which only the flush interval bounded
before. An oversize message counts only the head it keeps."""
FAULT_TOPICS: Final = f"{contract.TOPIC_ROOT}/vehicles/+/dtc"
INFO_TOPICS: Final = f"{contract.TOPIC_ROOT}/vehicles/+/info"
"""Vehicle info (the VIN a car answers) rides the fault-code session too: an agent sends it
before its fault codes, and only one session keeps that order, so a critical fault from a car
whose VIN does not match its register is held, not sent."""
"""The filter the fault-code session serves (one of :data:`edge.wire.contract.INGEST_TOPICS`)."""
FAULTS_SUFFIX: Final = "-faults"
"""Appended to the client id for the fault-code session's own client id."""


class Ingestor:
    """Subscribes to every ingest topic and lands what arrives in the DuckDB store.

    Args:
        broker_url: ``mqtt://host:port`` of the broker.
        db_path: the DuckDB file (opened read-write: this process is the store's writer).
        client_id: fixed MQTT client id; the broker keeps its session across restarts. The
            fault-code session's is this with ``-faults`` appended.
        flush_rows: land a batch once it holds this many telemetry rows (default: DuckDB's
            row-group size, see :data:`FLUSH_ROWS`)...
        flush_bytes: ...or this many bytes of payload (see :data:`FLUSH_BYTES`)...
        flush_interval_s: ...or once its first message has waited this long.
        share_group: subscribe as ``$share/<group>/...`` so several ingestors split the load.
        after_commit: called after each successful commit and ack (see :data:`AfterCommit`),
            with the connection (or the fault-code session's cursor) the batch landed on;
            the sessions take turns, it never runs twice at once. Its exceptions are logged
            and counted, never stop ingest. If it has a ``close()`` method, :meth:`stop`
            calls it after the last batch and before the store closes, since a hook working
            on a cursor of the writer's connection (such as
            :class:`pipeline.leads.urgent.UrgentLeads`) loses it with the connection; if it
            has ``warm_up(con)``, :meth:`start` calls it once with the connection its
            critical faults will land on, before the sessions subscribe; if it has
            ``wait_idle(timeout)``, the fault-code session waits on it after a critical
            fault's call (at most the rest of the bulk session's pause, 0.25 s), so the
            work it handed to its own threads runs while the bulk session gives way.
        critical_codes: fault codes (SAE J2012, any case) whose message lands at once,
            without waiting for its batch window; None (the default) takes the
            ``after_commit`` hook's ``critical_codes`` if it has them (as
            :class:`~pipeline.leads.urgent.UrgentLeads` does), else none.
        fault_session: serve fault codes on a session of their own (see the module
            docstring); None (the default) means yes unless a client certificate is
            configured (``tls.cert``): a broker binding client ids to certificates would
            let the two sessions take each other's place.
        fault_codes: False subscribes to no fault-code or vehicle-info topic at all (and
            unsubscribes both sessions from them, landing what the broker had queued for a
            fault-code session of an earlier run): for the second and later ingest
            workers of a shared subscription, so that one worker sees every fault code. A
            critical fault then raises one urgent lead, deduplicated against that worker's own
            store; dealt out to several workers, two of a vehicle's fault codes, or a copy the
            agent sent again, could each raise one.
        maintenance: called every ``maintenance_interval_s`` between batches (for example
            :class:`pipeline.store.export.ExportPolicy`); exceptions are logged and counted.
        require_registered_vehicles: dead-letter messages of vehicles not in the store's
            ``vehicles`` table (see :mod:`pipeline.ingest.admission`).
        vehicles_file: the fleet register, ``vehicles.csv`` as ``fleetcare fleet import``
            reads it (or the older ``vehicle_id,model,region``), imported at start and again
            when it changes, so vehicles are registered without a restart.
        customers_file: ``customers.csv``, imported likewise, so that ingest's urgent leads
            name the customer (without it they are held: no customer on record).
        rate_limit: the per-vehicle token bucket, or None for no limit. Simulated and
            replayed fleets compress time and must pass None or a limit sized for it. The
            fault-code session keeps buckets of its own (its messages are few and small).
        register_refresh_s: shortest interval between reloads of the registered vehicles.
        credentials: the MQTT login (else any ``user:password@`` in ``broker_url``).
        tls: CA, client certificate and key for a mutual-TLS broker (``mqtts://``); the
            backend's certificate is issued like a vehicle's (``fleetcare pki issue``).
        mqtt_client: ``"fast"`` (:class:`~pipeline.ingest.client.IngestClient`) or
            ``"stock"`` (paho's ``Client``, manual acks); same guarantees either way.
        receipts: after each commit, publish a receipt per vehicle of the batch (the agents
            delete a spooled message only on its receipt); False only for a test or a
            benchmark of ingest alone.

    Raises:
        TerminalPipelineError: ``mqtt_client`` is neither of those, or ``flush_rows``,
            ``flush_bytes``, ``flush_interval_s`` or ``maintenance_interval_s`` is not a
            positive number.
    """

    def __init__(self, broker_url: str, db_path: str | Path, *,
                 client_id: str = "fleetcare-ingest", flush_rows: int = FLUSH_ROWS,
                 flush_interval_s: float = 1.0, share_group: str | None = None,
                 flush_bytes: int = FLUSH_BYTES,
                 after_commit: AfterCommit | None = None,
                 critical_codes: Collection[str] | None = None,
                 fault_session: bool | None = None,
                 fault_codes: bool = True,
                 maintenance: Maintenance | None = None,
                 maintenance_interval_s: float = 60.0,
                 require_registered_vehicles: bool = True,
                 vehicles_file: str | Path | None = None,
                 customers_file: str | Path | None = None,
                 rate_limit: RateLimit | None = DEFAULT_RATE_LIMIT,
                 register_refresh_s: float = REFRESH_S,
                 credentials: MqttCredentials | None = None,
                 tls: BackendTls | None = None,
                 mqtt_client: MqttClientKind = "fast",
                 receipts: bool = True) -> None:
        if mqtt_client not in get_args(MqttClientKind):
            raise TerminalPipelineError(
                f"mqtt_client must be one of {', '.join(get_args(MqttClientKind))}, "
                f"not {mqtt_client!r}")
        _check_positive(flush_rows=flush_rows, flush_bytes=flush_bytes,
                        flush_interval_s=flush_interval_s,
                        maintenance_interval_s=maintenance_interval_s)
        self.broker_url, self.db_path, self.client_id = broker_url, Path(db_path), client_id
        self.flush_rows, self.flush_interval_s = flush_rows, flush_interval_s
        self.flush_bytes = flush_bytes
        self.share_group = share_group
        self.after_commit, self.maintenance = after_commit, maintenance
        if critical_codes is None:
            critical_codes = getattr(after_commit, "critical_codes", None) or ()
        self.critical_codes = frozenset(critical_codes)
        self.fault_session = (fault_session if fault_session is not None
                              else tls is None or tls.cert is None)
        self.fault_codes = fault_codes
        self.maintenance_interval_s = maintenance_interval_s
        self.require_registered_vehicles = require_registered_vehicles
        self.vehicles_file = Path(vehicles_file) if vehicles_file is not None else None
        self.customers_file = Path(customers_file) if customers_file is not None else None
        self.rate_limit, self.register_refresh_s = rate_limit, register_refresh_s
        self.credentials, self.tls = credentials, tls
        self.mqtt_client = mqtt_client
        self.receipts = receipts
        self._board = StatsBoard()
        self._stopping = threading.Event()
        self._hook_lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._sessions: list[Session] = []

    @property
    def topic_filters(self) -> list[str]:
        """The filters subscribed to, with the shared-subscription prefix if any (the bulk
        session's, then the fault-code session's)."""
        bulk, faults = self._filters()
        return bulk + faults

    def _filters(self) -> tuple[list[str], list[str]]:
        """The bulk session's filters and the fault-code session's (empty when it is off)."""
        prefix = f"$share/{self.share_group}/" if self.share_group else ""
        fast = (FAULT_TOPICS, INFO_TOPICS)
        if not self.fault_codes:
            return [prefix + t for t in contract.INGEST_TOPICS if t not in fast], []
        if not self.fault_session:
            return [prefix + topic for topic in contract.INGEST_TOPICS], []
        return ([prefix + topic for topic in contract.INGEST_TOPICS if topic not in fast],
                [prefix + topic for topic in fast])

    def _dropped_by_bulk(self, fault_filters: list[str]) -> list[str]:
        """What the bulk session unsubscribes from at every connect: the filters the
        fault-code session serves, or with fault codes off, those filters all the same."""
        if self.fault_codes:
            return fault_filters
        prefix = f"$share/{self.share_group}/" if self.share_group else ""
        return [prefix + FAULT_TOPICS, prefix + INFO_TOPICS]

    @property
    def stats(self) -> IngestStats:
        """A snapshot of the counters."""
        return self._board.stats

    def wait_for(self, predicate: Callable[[IngestStats], bool], timeout: float) -> bool:
        """Block until ``predicate(stats)`` holds; False if ``timeout`` seconds pass first."""
        return self._board.wait_for(predicate, timeout)

    def start(self) -> Ingestor:
        """Open the store, connect, subscribe, and return once the subscriptions are active.

        A start that fails leaves no store file behind when there was none before and
        nothing landed: a typo in the broker URL must not leave an empty database that
        looks like a store.

        Raises:
            StoreError: the DuckDB file cannot be opened for writing.
            FleetFileError: ``vehicles_file`` or ``customers_file`` cannot be read or holds
                an invalid line.
            BrokerError: the broker cannot be reached or refuses the connection.
        """
        new_store = not self.db_path.exists()
        try:
            return self._start()
        except BaseException:
            self.stop()
            if new_store and self.stats.last_flush_at is None:
                for path in (self.db_path, self.db_path.with_name(self.db_path.name + ".wal")):
                    path.unlink(missing_ok=True)
            raise

    def _start(self) -> Ingestor:
        host, port = parse_broker_url(self.broker_url)
        connection = Connection(self.broker_url, host, port, self.credentials, self.tls,
                                self.mqtt_client)
        self._stopping.clear()
        self._con = store.connect(self.db_path)
        warm_up()
        self._sessions = self._make_sessions(self._con, connection)
        hook_warm_up = getattr(self.after_commit, "warm_up", None)
        if callable(hook_warm_up):
            hook_warm_up(self._cursor or self._con)
        # The fault-code session subscribes first, so no fault code falls between the two
        # while the bulk session gives up its filter.
        for session in reversed(self._sessions):
            session.start()
            if not session.subscribed.wait(CONNECT_TIMEOUT_S):
                raise BrokerError(f"no subscription of {session.client_id} at "
                                  f"{self._shown_url} within {CONNECT_TIMEOUT_S:g} s (see the "
                                  f"log for the broker's answer)")
        log.info("ingesting %s from %s into %s on the %s paho client", self.topic_filters,
                 self._shown_url, self.db_path, self.mqtt_client)
        return self

    def _make_sessions(self, con: duckdb.DuckDBPyConnection,
                       connection: Connection) -> list[Session]:
        bulk_filters, fault_filters = self._filters()
        rule = BatchRule(self.flush_rows, self.flush_bytes, self.flush_interval_s)
        priority = Priority()
        bulk = Session("ingest", self.client_id, bulk_filters,
                       self._dropped_by_bulk(fault_filters),
                       self._writer(con, files=True), rule, connection, self._board,
                       self._stopping, receipts=self.receipts,
                       maintenance=((self.maintenance, self.maintenance_interval_s)
                                    if self.maintenance else None), priority=priority)
        # A telemetry-only worker still connects its fault-code session, with no filter: if
        # the worker once ran with fault codes, that persistent session is still in the
        # share group and the broker would keep queueing its share of the fault codes for
        # it, never to be landed. Connected, it gives up its filters and lands what waited.
        retired = not self.fault_codes and self.fault_session
        if not fault_filters and not retired:
            return [bulk]
        self._cursor = con.cursor()  # DuckDB: one connection object per thread
        faults = Session("ingest-faults", self.client_id + FAULTS_SUFFIX, fault_filters,
                         self._dropped_by_bulk([]) if retired else (),
                         self._writer(self._cursor, files=False), rule, connection,
                         self._board, self._stopping, receipts=self.receipts,
                         priority=priority, urgent_first=True)
        return [bulk, faults]

    def _writer(self, con: duckdb.DuckDBPyConnection, *, files: bool) -> BatchWriter:
        return BatchWriter(con, self._board, self.after_commit, self._admission(con, files),
                           critical_codes=self.critical_codes, hook_lock=self._hook_lock)

    def _admission(self, con: duckdb.DuckDBPyConnection, files: bool) -> Admission:
        """The backend checks for one session; only the bulk one imports the files."""
        vehicles = self.vehicles_file if files else None
        customers = self.customers_file if files else None
        load = store_loader(con, vehicles, customers)
        if self.require_registered_vehicles:
            register = VehicleRegister(load, self.register_refresh_s)
            if files:
                log.info("admitting the %d registered vehicles", len(register))
        else:
            register = None
            if vehicles is not None or customers is not None:
                load()  # still register the files' rows (once)
        limiter = None
        if self.rate_limit is not None:
            downtime = seconds_since_last_landing(con)
            limiter = RateLimiter(self.rate_limit, downtime_s=downtime or 0.0)
            if limiter.catch_up_rows and files:
                log.info("the store last landed a message %.0f s ago: each vehicle may send "
                         "up to %.0f rows of backlog on top of its burst", downtime,
                         limiter.catch_up_rows)
        return Admission(register, limiter)

    @property
    def _shown_url(self) -> str:
        """The broker URL as it may be logged (any password masked)."""
        return redact_url(self.broker_url)

    def stop(self) -> None:
        """Land and ack what is pending, disconnect and close the store (idempotent)."""
        self._stopping.set()
        for session in self._sessions:
            session.join()
        for session in self._sessions:
            session.disconnect()
        self._sessions = []
        close_hook = getattr(self.after_commit, "close", None)
        if callable(close_hook):
            close_hook()  # the hook's cursors die with the connection: let it finish first
        for con in (self._cursor, self._con):
            if con is not None:
                con.close()
        self._cursor = self._con = None

    def __enter__(self) -> Ingestor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _check_positive(**values: float) -> None:
    """Refuse a setting that would make ingest never (or always) land a batch.

    Raises:
        TerminalPipelineError: a value is zero, negative or not a number; names the first.
    """
    for name, value in values.items():
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise TerminalPipelineError(f"{name} must be a positive number, not {value!r}")


def run_forever(broker_url: str, db_path: str | Path, **options: Any) -> None:
    """Run an :class:`Ingestor` until SIGINT or SIGTERM, then stop it cleanly.

    ``options`` are :class:`Ingestor`'s keyword arguments. Prints nothing: the CLI does.

    Raises:
        StoreError: the DuckDB file cannot be opened for writing.
        BrokerError: the broker cannot be reached.
    """
    run_until_terminated(Ingestor(broker_url, db_path, **options))

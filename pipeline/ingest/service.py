"""MQTT to DuckDB, exactly once: acknowledge a message only after its rows are committed.

The subscriber keeps a persistent session (``clean_session=False``, fixed client id) and
acknowledges QoS 1 messages by hand, so a message is either committed and acked, or
unacked and redelivered by the broker after a reconnect or restart. Redelivery is
harmless because landing skips every ``msg_id`` already in ``ingested_messages``.

One thread owns both the MQTT socket and the DuckDB connection: it runs paho's ``loop()``
itself (through :class:`pipeline.ingest.client.IngestClient`, which reads the socket in
large chunks and parses PUBLISH packets without paho's per-message objects), decodes each
message as it arrives, lands a batch when it is full or old enough, then acks the batch in
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

The broker must let a whole batch be in flight unacknowledged: mosquitto's default of 20
in-flight messages per client would cap a batch at 20 messages per ``flush_interval_s``.
:class:`pipeline.broker.harness.EmbeddedBroker` configures 10,000.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args

import duckdb
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.wire import contract
from pipeline.broker.auth import (
    BackendTls,
    MqttCredentials,
    apply_client_auth,
    apply_client_tls,
    parse_broker_url,
    redact_url,
)
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
from pipeline.ingest.client import IngestClient
from pipeline.ingest.columnar import warm_up
from pipeline.ingest.landing import KEPT_BYTES, InboundMessage, LandResult, inbound
from pipeline.ingest.receipts import Outcome, build_receipts
from pipeline.ingest.stats import IngestStats, StatsBoard
from pipeline.ingest.writer import BatchWriter
from pipeline.store import connection as store

__all__ = ["AfterCommit", "IngestStats", "Ingestor", "Maintenance", "RateLimit", "run_forever"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
KEEPALIVE_S: Final = 30
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
POLL_S: Final = 0.1
"""Longest the loop waits on the socket: how soon a stop or a due batch is noticed."""
MAX_BACKOFF_S: Final = 30.0
RECEIPTS_IN_FLIGHT: Final = 1000
"""Receipts paho may have unacknowledged at once (its default of 20 would hold a commit's
receipts for a large fleet back, each waiting for an earlier one's PUBACK)."""

AfterCommit = Callable[[duckdb.DuckDBPyConnection, LandResult], None]
"""Called in the ingest thread after each commit and ack, with the writer's connection."""
Maintenance = Callable[[duckdb.DuckDBPyConnection], None]
"""Periodic work on the writer's connection between batches (exports, snapshots)."""


@dataclass(frozen=True, slots=True)
class _Delivery:
    """What acking a message needs; ``session`` tells acks of an old connection."""

    mid: int
    qos: int
    session: int


class Ingestor:
    """Subscribes to every ingest topic and lands what arrives in the DuckDB store.

    Args:
        broker_url: ``mqtt://host:port`` of the broker.
        db_path: the DuckDB file (opened read-write: this process is the store's writer).
        client_id: fixed MQTT client id; the broker keeps its session across restarts.
        flush_rows: land a batch once it holds this many telemetry rows (default: DuckDB's
            row-group size, see :data:`FLUSH_ROWS`)...
        flush_bytes: ...or this many bytes of payload (see :data:`FLUSH_BYTES`)...
        flush_interval_s: ...or once its first message has waited this long.
        share_group: subscribe as ``$share/<group>/...`` so several ingestors split the load.
        after_commit: called after each successful commit and ack (see :data:`AfterCommit`);
            its exceptions are logged and counted, never stop ingest. If it has a
            ``close()`` method, :meth:`stop` calls it after the last batch and before the
            store closes, since a hook working on a cursor of the writer's connection (such
            as :class:`pipeline.leads.urgent.UrgentLeads`) loses it with the connection.
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
            replayed fleets compress time and must pass None or a limit sized for it.
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
        self.maintenance_interval_s = maintenance_interval_s
        self.require_registered_vehicles = require_registered_vehicles
        self.vehicles_file = Path(vehicles_file) if vehicles_file is not None else None
        self.customers_file = Path(customers_file) if customers_file is not None else None
        self.rate_limit, self.register_refresh_s = rate_limit, register_refresh_s
        self.credentials, self.tls = credentials, tls
        self.mqtt_client = mqtt_client
        self.receipts = receipts
        self._board = StatsBoard()
        self._session = 0
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._client: mqtt.Client | None = None
        self._writer: BatchWriter | None = None
        self._thread: threading.Thread | None = None
        self._batch: list[_Delivery] = []
        self._deadline = 0.0
        self._received = 0
        self._flush_failures_in_row = 0
        self._backoff = 0.5

    @property
    def topic_filters(self) -> list[str]:
        """The filters subscribed to, with the shared-subscription prefix if any."""
        prefix = f"$share/{self.share_group}/" if self.share_group else ""
        return [prefix + topic for topic in contract.INGEST_TOPICS]

    @property
    def stats(self) -> IngestStats:
        """A snapshot of the counters."""
        return self._board.stats

    def wait_for(self, predicate: Callable[[IngestStats], bool], timeout: float) -> bool:
        """Block until ``predicate(stats)`` holds; False if ``timeout`` seconds pass first."""
        return self._board.wait_for(predicate, timeout)

    def start(self) -> Ingestor:
        """Open the store, connect, subscribe, and return once the subscription is active.

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
        self._stopping.clear()
        self._subscribed.clear()
        self._con = store.connect(self.db_path)
        warm_up()
        try:
            admission = self._admission(self._con)
        except Exception:
            self.stop()
            raise
        self._writer = BatchWriter(self._con, self._board, self.after_commit, admission)
        try:
            self._client = self._make_client()
        except BrokerError:
            self.stop()
            raise
        try:
            self._client.connect(host, port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            self.stop()
            raise BrokerError(f"cannot connect to the broker at {self._shown_url}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()
        if not self._subscribed.wait(CONNECT_TIMEOUT_S):
            self.stop()
            raise BrokerError(f"no subscription at {self._shown_url} within "
                              f"{CONNECT_TIMEOUT_S:g} s (see the log for the broker's answer)")
        log.info("ingesting %s from %s into %s on the %s paho client", self.topic_filters,
                 self._shown_url, self.db_path, self.mqtt_client)
        return self

    def _admission(self, con: duckdb.DuckDBPyConnection) -> Admission:
        load = store_loader(con, self.vehicles_file, self.customers_file)
        if self.require_registered_vehicles:
            register = VehicleRegister(load, self.register_refresh_s)
            log.info("admitting the %d registered vehicles", len(register))
        else:
            register = None
            if self.vehicles_file is not None or self.customers_file is not None:
                load()  # still register the files' rows (once)
        limiter = None
        if self.rate_limit is not None:
            downtime = seconds_since_last_landing(con)
            limiter = RateLimiter(self.rate_limit, downtime_s=downtime or 0.0)
            if limiter.catch_up_rows:
                log.info("the store last landed a message %.0f s ago: each vehicle may send "
                         "up to %.0f rows of backlog on top of its burst", downtime,
                         limiter.catch_up_rows)
        return Admission(register, limiter)

    def _make_client(self) -> mqtt.Client:
        # manual_ack on both: paho must not ack a PUBLISH before its rows are committed.
        factory = IngestClient if self.mqtt_client == "fast" else mqtt.Client
        client = factory(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                         clean_session=False, protocol=MQTTProtocolVersion.MQTTv311,
                         manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        if isinstance(client, IngestClient):
            client.on_publish_fast = self._receive
            # An oversize payload is hashed and dropped as it is read, never held whole.
            client.on_oversize_fast = self._receive_oversize
            client.oversize_limit, client.oversize_kept = contract.MAX_PAYLOAD_BYTES, KEPT_BYTES
        client.on_disconnect = self._on_disconnect
        apply_client_auth(client, self.broker_url, self.credentials)
        apply_client_tls(client, self.broker_url, self.tls)
        client.max_inflight_messages_set(RECEIPTS_IN_FLIGHT)
        return client

    @property
    def _shown_url(self) -> str:
        """The broker URL as it may be logged (any password masked)."""
        return redact_url(self.broker_url)

    def stop(self) -> None:
        """Land and ack what is pending, disconnect and close the store (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._client is not None:
            self._client.disconnect()
            self._client = None
        close_hook = getattr(self.after_commit, "close", None)
        if callable(close_hook):
            close_hook()  # the hook's cursors die with the connection: let it finish first
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Ingestor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Callbacks: paho calls them from loop(), i.e. on the ingest thread.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker %s refused the connection: %s", self._shown_url, reason)
            return
        self._session += 1
        self._backoff = 0.5
        client.subscribe([(topic, 1) for topic in self.topic_filters])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker %s refused subscriptions: %s", self._shown_url, refused)
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Any) -> None:
        if not self._stopping.is_set():
            log.warning("lost the broker %s (%s); reconnecting", self._shown_url, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._receive(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain))

    def _receive(self, topic: str, payload: bytes, mid: int, qos: int,
                 retain: bool = False) -> bool:
        """One PUBLISH, from paho's ``on_message`` or the client's direct path; returns
        False once the batch is full, so the client stops reading until it is landed.

        paho ignores what ``on_message`` returns, and paho 2.2's ``loop_read()`` parses one
        packet per message it has in flight (the receipts awaiting their PUBACKs), so the
        stock client can pass a full batch by that many messages before :meth:`_drain`
        checks it again; the fast client stops at once. An oversize payload from the stock
        client (which reads it whole) is cut to its head here, before it joins the batch."""
        return self._accept(inbound(topic, payload, time.time(), retain), mid, qos)

    def _receive_oversize(self, topic: str, head: bytes, size: int, sha256: str, mid: int,
                          qos: int, retain: bool) -> bool:
        """An oversize PUBLISH the fast client read without keeping it: its head, size, hash."""
        return self._accept(InboundMessage(topic, head, time.time(), retain, size, sha256),
                            mid, qos)

    def _accept(self, item: InboundMessage, mid: int, qos: int) -> bool:
        if not self._batch:
            self._deadline = time.monotonic() + self.flush_interval_s
        self._batch.append(_Delivery(mid, qos, self._session))
        self._received += 1
        writer = self._writer
        if writer is None:
            return True
        writer.add(item)
        return not self._full(writer)

    def _full(self, writer: BatchWriter) -> bool:
        """Whether the pending batch must land now: by rows, or by payload bytes held."""
        return writer.rows >= self.flush_rows or writer.bytes >= self.flush_bytes

    # The ingest thread: read, batch, land, ack, maintain, reconnect.

    def _run(self) -> None:
        client = self._client
        if client is None:
            return
        next_maintenance = time.monotonic() + self.maintenance_interval_s
        while not self._stopping.is_set():
            wait = max(0.0, self._deadline - time.monotonic()) if self._batch else POLL_S
            before = self._received
            if client.loop(timeout=min(wait, POLL_S)) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._reconnect(client)
            elif self._received > before:
                self._drain(client)
            # Counting costs a lock and a wake-up: do it per 256 messages, or when idle.
            if self._received >= 256 or (self._received and self._received == before):
                self._count_received()
            now = time.monotonic()
            if self._batch and (now >= self._deadline or (self._writer is not None
                                and self._full(self._writer))):
                self._flush(client)
            if self.maintenance and now >= next_maintenance and self._writer is not None:
                self._writer.maintain(self.maintenance)
                next_maintenance = time.monotonic() + self.maintenance_interval_s
        self._flush(client)

    def _drain(self, client: mqtt.Client) -> None:
        """Read messages already waiting on the socket without a select() for each.

        ``loop()`` costs a select() per packet; while PUBLISHes keep coming, reading on
        until a read yields nothing (or a batch is full) saves a fifth of the CPU.
        """
        writer = self._writer
        for _ in range(1000):
            if writer is not None and self._full(writer):
                return  # the batch is full (perhaps already by loop()): land it first
            before = self._received
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or self._received == before:
                return

    def _count_received(self) -> None:
        self._board.add(messages_received=self._received)
        self._received = 0

    def _flush(self, client: mqtt.Client) -> None:
        if self._received:
            self._count_received()
        writer, batch, self._batch = self._writer, self._batch, []
        if writer is None or not batch:
            return
        result = writer.flush()
        if result is None:
            # Not acked: the broker redelivers after a reconnect, and landing is idempotent.
            self._flush_failures_in_row += 1
            self._restart_session(client)
            return
        self._flush_failures_in_row = 0
        self._ack(client, batch)
        if self.receipts:
            self._publish_receipts(client, writer.outcomes)
        writer.committed(result)

    def _publish_receipts(self, client: mqtt.Client, outcomes: Sequence[Outcome]) -> None:
        """Tell each vehicle of the committed batch which of its messages the store holds.

        A receipt paho cannot send now stays queued in its session and goes out after the
        reconnect; one that is lost costs the agent a re-send, landed as a duplicate and
        receipted again.
        """
        wires = build_receipts(outcomes)
        for topic, payload in wires:
            client.publish(topic, payload, qos=1)
        if wires:
            self._board.add(receipts_published=len(wires))

    def _restart_session(self, client: mqtt.Client) -> None:
        """Reconnect after a backoff, so the broker resends what is left unacknowledged.

        MQTT 3.1.1 resends unacknowledged messages only on a new connection; without one
        they would also keep occupying the broker's in-flight window for this client.
        """
        delay = min(MAX_BACKOFF_S, 0.25 * 2 ** (self._flush_failures_in_row - 1))
        if self._stopping.wait(delay):
            return
        client.disconnect()
        self._reconnect(client, wait_first=False)
        log.info("reconnected to %s to get unacknowledged messages again", self._shown_url)

    def _reconnect(self, client: mqtt.Client, wait_first: bool = True) -> None:
        """Connect again with exponential backoff until it works or the ingestor stops."""
        while not (wait_first and self._stopping.wait(self._backoff)):
            wait_first = True
            try:
                client.reconnect()
                return
            except OSError as exc:
                log.warning("broker %s unreachable (%s); next try in %.1f s",
                            self._shown_url, exc, self._backoff)
                self._backoff = min(MAX_BACKOFF_S, self._backoff * 2)

    def _ack(self, client: mqtt.Client, deliveries: Sequence[_Delivery]) -> None:
        # A mid from an earlier connection may name another message now; the broker
        # resends those anyway and the resent copy is acked as a duplicate.
        session = self._session
        mids = [d.mid for d in deliveries if d.session == session and d.qos == 1]
        if isinstance(client, IngestClient):
            client.ack_in_order(mids)
            return
        for mid in mids:  # in arrival order, as MQTT requires; one write each
            client.ack(mid, 1)


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

"""One MQTT session of ingest and the batch it fills: read, batch, land, ack, receipt, reconnect.

A :class:`Session` owns one paho client (a persistent session: ``clean_session=False``, a fixed
client id, manual acks), one :class:`~pipeline.ingest.writer.BatchWriter` and one thread that
runs paho's ``loop()`` itself, decodes each message as it arrives, lands a batch when it is
full, old enough or holds a critical fault code, then acks the batch in arrival order with one
write (MQTT requires PUBACKs in PUBLISH order) and publishes its receipts. Nothing is acked
before its commit; a failed commit acks nothing and reconnects so the broker resends.

:class:`pipeline.ingest.service.Ingestor` runs one session for the bulk topics and, when it
can, a second one for fault codes only (see its docstring): the broker keeps one ordered queue
per session, so only a session of its own lets a critical fault pass a backlog of telemetry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.wire import contract
from pipeline.broker.auth import (
    BackendTls,
    MqttCredentials,
    apply_client_auth,
    apply_client_tls,
    redact_url,
)
from pipeline.config import MqttClientKind
from pipeline.errors import BrokerError
from pipeline.ingest.client import IngestClient
from pipeline.ingest.landing import KEPT_BYTES, InboundMessage, inbound
from pipeline.ingest.receipts import Outcome, build_receipts
from pipeline.ingest.stats import StatsBoard
from pipeline.ingest.writer import BatchWriter, Maintenance

log = logging.getLogger(__name__)

KEEPALIVE_S: Final = 30
POLL_S: Final = 0.1
"""Longest the loop waits on the socket: how soon a stop or a due batch is noticed."""
MAX_BACKOFF_S: Final = 30.0
RECEIPTS_IN_FLIGHT: Final = 1000
"""Receipts paho may have unacknowledged at once (its default of 20 would hold a commit's
receipts for a large fleet back, each waiting for an earlier one's PUBACK)."""
MAX_GIVE_WAY_S: Final = 0.25
"""Longest the bulk session pauses for one critical fault's work (a stuck hook cannot stall
the bulk path for longer)."""


class Priority:
    """Urgent work first: while the fault-code session lands a critical fault and runs its
    hook (and the work the hook hands to its own threads: an urgent lead's delivery), the bulk
    session's thread waits between reads and before it lands a batch, instead of contending
    for the GIL and the cores.

    Both threads are Python-bound at times, and CPython hands the GIL to a waiting thread
    only every switch interval (5 ms): each of the urgent path's many short DuckDB calls
    would otherwise wait that long to get the GIL back from the bulk thread draining a
    backlog, and a bulk commit's DuckDB threads took the cores from the urgent advice's
    queries (measured outside ingest: 83 ms alone, 262 ms beside bulk inserts). Critical
    faults are rare, so the pauses cost the bulk path nothing measurable;
    the bulk session gives way for at most ``max_wait_s`` per claim, so urgent work
    that hangs (a failing commit backing off, a slow hook) cannot stall it for longer.
    """

    def __init__(self, max_wait_s: float = MAX_GIVE_WAY_S) -> None:
        self.max_wait_s = max_wait_s
        self._idle = threading.Event()
        self._idle.set()
        self._until = 0.0

    def claim(self) -> None:
        """Urgent work has begun (the fault-code session holds a critical fault)."""
        if self._idle.is_set():
            self._until = time.monotonic() + self.max_wait_s
            self._idle.clear()

    def release(self) -> None:
        """The urgent work is done: the bulk session goes on."""
        self._idle.set()

    def time_left(self) -> float:
        """Seconds the current claim may still hold the bulk session (0 when none)."""
        return 0.0 if self._idle.is_set() else max(0.0, self._until - time.monotonic())

    def give_way(self) -> None:
        """Wait while urgent work is under way, until its claim's time is up."""
        if not self._idle.is_set():
            self._idle.wait(max(0.0, self._until - time.monotonic()))


@dataclass(frozen=True, slots=True)
class Connection:
    """Where and how a session connects: the same for every session of one ingestor."""

    broker_url: str
    host: str
    port: int
    credentials: MqttCredentials | None = None
    tls: BackendTls | None = None
    mqtt_client: MqttClientKind = "fast"

    @property
    def shown_url(self) -> str:
        """The broker URL as it may be logged (any password masked)."""
        return redact_url(self.broker_url)


@dataclass(frozen=True, slots=True)
class BatchRule:
    """When a pending batch lands: rows, payload bytes, or the age of its first message."""

    rows: int
    bytes: int
    interval_s: float


@dataclass(frozen=True, slots=True)
class _Delivery:
    """What acking a message needs; ``session`` tells acks of an old connection."""

    mid: int
    qos: int
    session: int


class Session:
    """One persistent MQTT session feeding one :class:`BatchWriter` on its own thread.

    Args:
        name: the thread's name (and the session's in the log).
        client_id: the session's fixed MQTT client id.
        filters: topic filters to subscribe to at every connect.
        dropped: topic filters to unsubscribe from at every connect: a persistent session
            keeps its subscriptions, so filters another session now serves must be removed.
        writer: lands what this session reads (it owns the thread's DuckDB cursor).
        rule: when the pending batch lands (a critical fault code also lands it at once).
        connection: the broker and the login.
        board: the ingestor's counters.
        stopping: set to stop; the session lands and acks what is pending first.
        receipts: publish a receipt per vehicle after each commit.
        maintenance: periodic work between batches (``(work, interval_s)``), or None.
        priority: shared by the sessions of one ingestor (see :class:`Priority`).
        urgent_first: this session claims ``priority`` while it holds a critical fault;
            the others give way to it.
    """

    def __init__(self, name: str, client_id: str, filters: Sequence[str],
                 dropped: Sequence[str], writer: BatchWriter, rule: BatchRule,
                 connection: Connection, board: StatsBoard, stopping: threading.Event, *,
                 receipts: bool = True,
                 maintenance: tuple[Maintenance, float] | None = None,
                 priority: Priority | None = None, urgent_first: bool = False) -> None:
        self.name, self.client_id = name, client_id
        self.filters, self.dropped = list(filters), list(dropped)
        self._writer, self._rule, self._conn = writer, rule, connection
        self._board, self._stopping = board, stopping
        self._receipts, self._maintenance = receipts, maintenance
        self._priority, self._urgent_first = priority or Priority(), urgent_first
        self.subscribed = threading.Event()
        self._client: mqtt.Client | None = None
        self._thread: threading.Thread | None = None
        self._session = 0
        self._batch: list[_Delivery] = []
        self._deadline = 0.0
        self._first_at = 0.0
        self._received = 0
        self._flush_failures_in_row = 0
        self._backoff = 0.5

    def start(self) -> None:
        """Make the client, connect and start the thread (the subscription follows).

        Raises:
            BrokerError: the client cannot be set up or the broker cannot be reached.
        """
        self._client = self._make_client()
        try:
            self._client.connect(self._conn.host, self._conn.port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            raise BrokerError(f"cannot connect to the broker at {self._conn.shown_url}: "
                              f"{exc}") from exc
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def join(self) -> None:
        """Wait for the thread to land what is pending and end (after ``stopping`` is set)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def disconnect(self) -> None:
        """Close the connection (after :meth:`join`)."""
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    def _make_client(self) -> mqtt.Client:
        # manual_ack on both: paho must not ack a PUBLISH before its rows are committed.
        factory = IngestClient if self._conn.mqtt_client == "fast" else mqtt.Client
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
        apply_client_auth(client, self._conn.broker_url, self._conn.credentials)
        apply_client_tls(client, self._conn.broker_url, self._conn.tls)
        client.max_inflight_messages_set(RECEIPTS_IN_FLIGHT)
        return client

    # Callbacks: paho calls them from loop(), i.e. on this session's thread.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker %s refused the connection of %s: %s", self._conn.shown_url,
                      self.client_id, reason)
            return
        self._session += 1
        self._backoff = 0.5
        if self.dropped:
            client.unsubscribe(self.dropped)
        if not self.filters:  # a session kept only to give up its filters and drain its queue
            self.subscribed.set()
            return
        client.subscribe([(topic, 1) for topic in self.filters])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker %s refused subscriptions of %s: %s", self._conn.shown_url,
                      self.client_id, refused)
            return
        self.subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Any) -> None:
        if not self._stopping.is_set():
            log.warning("%s lost the broker %s (%s); reconnecting", self.name,
                        self._conn.shown_url, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._receive(msg.topic, bytes(msg.payload), msg.mid, msg.qos, bool(msg.retain))

    def _receive(self, topic: str, payload: bytes, mid: int, qos: int,
                 retain: bool = False) -> bool:
        """One PUBLISH, from paho's ``on_message`` or the client's direct path; returns
        False once the batch must land, so the client stops reading until it has.

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
            self._deadline = time.monotonic() + self._rule.interval_s
            self._first_at = time.perf_counter()
        self._batch.append(_Delivery(mid, qos, self._session))
        self._received += 1
        self._writer.add(item)
        if self._urgent_first and self._writer.urgent:
            self._priority.claim()
        return not self._due()

    def _due(self) -> bool:
        """Whether the pending batch must land now: by rows, by payload bytes held, or
        because it holds a critical fault code (which never waits for the interval)."""
        writer = self._writer
        return (writer.urgent or writer.rows >= self._rule.rows
                or writer.bytes >= self._rule.bytes)

    # The thread: read, batch, land, ack, maintain, reconnect.

    def _run(self) -> None:
        client = self._client
        if client is None:
            return
        work, interval_s = self._maintenance or (None, 0.0)
        next_maintenance = time.monotonic() + interval_s
        while not self._stopping.is_set():
            if not self._urgent_first:
                self._priority.give_way()
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
            if self._batch and (now >= self._deadline or self._due()):
                if not self._urgent_first:
                    self._priority.give_way()  # a bulk commit would take the cores from it
                self._flush(client)
            if work is not None and now >= next_maintenance:
                self._writer.maintain(work)
                next_maintenance = time.monotonic() + interval_s
        self._flush(client)

    def _drain(self, client: mqtt.Client) -> None:
        """Read messages already waiting on the socket without a select() for each.

        ``loop()`` costs a select() per packet; while PUBLISHes keep coming, reading on
        until a read yields nothing (or a batch is due) saves a fifth of the CPU.
        """
        for _ in range(1000):
            if self._due():
                return  # the batch is due (perhaps already by loop()): land it first
            if not self._urgent_first:
                self._priority.give_way()
            before = self._received
            if client.loop_read() != MQTTErrorCode.MQTT_ERR_SUCCESS or self._received == before:
                return

    def _count_received(self) -> None:
        self._board.add(messages_received=self._received)
        self._received = 0

    def _flush(self, client: mqtt.Client) -> None:
        if self._received:
            self._count_received()
        try:
            self._land(client)
        finally:
            if self._urgent_first:
                self._priority.release()

    def _land(self, client: mqtt.Client) -> None:
        writer, batch, self._batch = self._writer, self._batch, []
        if not batch:
            return
        urgent = writer.urgent
        result = writer.flush()
        if result is None:
            # Not acked: the broker redelivers after a reconnect, and landing is idempotent.
            self._flush_failures_in_row += 1
            self._restart_session(client)
            return
        self._flush_failures_in_row = 0
        self._ack(client, batch)
        if self._receipts:
            self._publish_receipts(client, writer.outcomes)
        receipted = time.perf_counter()
        writer.committed(result)
        if urgent and self._urgent_first:
            writer.settle(self._priority.time_left())  # the lead's delivery, still unhurried
        if urgent:
            done = time.perf_counter()
            log.info("%s: a critical fault landed and was receipted %.1f ms after its batch "
                     "began (%d messages), its hook (with what it handed on) took %.1f ms",
                     self.name, (receipted - self._first_at) * 1000, len(batch),
                     (done - receipted) * 1000)

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
        log.info("%s reconnected to %s to get unacknowledged messages again", self.name,
                 self._conn.shown_url)

    def _reconnect(self, client: mqtt.Client, wait_first: bool = True) -> None:
        """Connect again with exponential backoff until it works or the ingestor stops."""
        while not (wait_first and self._stopping.wait(self._backoff)):
            wait_first = True
            try:
                client.reconnect()
                return
            except OSError as exc:
                log.warning("broker %s unreachable (%s); next try in %.1f s",
                            self._conn.shown_url, exc, self._backoff)
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

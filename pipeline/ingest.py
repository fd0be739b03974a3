"""MQTT to DuckDB, exactly once: acknowledge a message only after its rows are committed.

The subscriber keeps a persistent session (``clean_session=False``, fixed client id) and
acknowledges QoS 1 messages by hand, so a message is either committed and acked, or
unacked and redelivered by the broker after a reconnect or restart. Redelivery is
harmless because landing skips every ``msg_id`` already in ``ingested_messages``.

Threads: paho's network thread only hands each message to a bounded queue; one writer
thread decodes, batches, lands and then acks in arrival order (MQTT requires PUBACKs in
the order the PUBLISHes came). When the queue is full the network thread waits, which
stops reading the socket and pushes back on the broker instead of dropping anything.
The writer thread owns the DuckDB connection, so the ``after_commit`` hook and the
periodic ``maintenance`` (exports, snapshots) run there too, between batches.

The broker must let a whole batch be in flight unacknowledged: mosquitto's default of 20
in-flight messages per client would cap a batch at 20 messages per ``flush_interval_s``.
:class:`pipeline.broker.EmbeddedBroker` configures 10,000.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge import contract
from pipeline import store
from pipeline.broker import parse_broker_url
from pipeline.errors import BrokerError
from pipeline.ingest_stats import IngestStats, StatsBoard
from pipeline.ingest_writer import BatchWriter
from pipeline.landing import InboundMessage, LandResult
from pipeline.lifecycle import run_until_terminated

__all__ = ["AfterCommit", "IngestStats", "Ingestor", "Maintenance", "run_forever"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 10.0
KEEPALIVE_S: Final = 30
_STOP: Final = object()

AfterCommit = Callable[[duckdb.DuckDBPyConnection, LandResult], None]
"""Called in the writer thread after each commit and ack, with the writer's connection."""
Maintenance = Callable[[duckdb.DuckDBPyConnection], None]
"""Periodic work on the writer's connection between batches (exports, snapshots)."""


@dataclass(frozen=True, slots=True)
class _Delivery:
    """A message plus what acking it needs; ``session`` tells acks of an old connection."""

    mid: int
    qos: int
    session: int
    item: InboundMessage


class Ingestor:
    """Subscribes to every ingest topic and lands what arrives in the DuckDB store.

    Args:
        broker_url: ``mqtt://host:port`` of the broker.
        db_path: the DuckDB file (opened read-write: this process is the store's writer).
        client_id: fixed MQTT client id; the broker keeps its session across restarts.
        flush_rows: land a batch once it holds this many telemetry rows...
        flush_interval_s: ...or once its first message has waited this long.
        share_group: subscribe as ``$share/<group>/...`` so several ingestors split the load.
        queue_size: messages the network thread may hand over before it has to wait.
        after_commit: called after each successful commit and ack (see :data:`AfterCommit`);
            its exceptions are logged and counted, never stop ingest.
        maintenance: called every ``maintenance_interval_s`` between batches (for example
            :class:`pipeline.export.ExportPolicy`); exceptions are logged and counted.
    """

    def __init__(self, broker_url: str, db_path: str | Path, *,
                 client_id: str = "fleetcare-ingest", flush_rows: int = 100_000,
                 flush_interval_s: float = 1.0, share_group: str | None = None,
                 queue_size: int = 10_000, after_commit: AfterCommit | None = None,
                 maintenance: Maintenance | None = None,
                 maintenance_interval_s: float = 60.0) -> None:
        self.broker_url, self.db_path, self.client_id = broker_url, Path(db_path), client_id
        self.flush_rows, self.flush_interval_s = flush_rows, flush_interval_s
        self.share_group, self.queue_size = share_group, queue_size
        self.after_commit, self.maintenance = after_commit, maintenance
        self.maintenance_interval_s = maintenance_interval_s
        self._inbox: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._board = StatsBoard()
        self._session = 0
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._refusing = threading.Event()
        self._failures_in_row = 0
        self._con: duckdb.DuckDBPyConnection | None = None
        self._client: mqtt.Client | None = None
        self._writer: threading.Thread | None = None

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

        Raises:
            StoreError: the DuckDB file cannot be opened for writing.
            BrokerError: the broker cannot be reached or refuses the connection.
        """
        host, port = parse_broker_url(self.broker_url)
        self._stopping.clear()
        self._refusing.clear()
        self._subscribed.clear()
        self._con = store.connect(self.db_path)
        self._client = self._make_client()
        writer = BatchWriter(self._con, self._board, self.after_commit)
        self._writer = threading.Thread(target=self._write_loop, args=(writer,),
                                        name="ingest-writer", daemon=True)
        self._writer.start()
        try:
            self._client.connect(host, port, keepalive=KEEPALIVE_S)
        except OSError as exc:
            self.stop()
            raise BrokerError(f"cannot connect to the broker at {self.broker_url}: {exc}") from exc
        self._client.loop_start()
        if not self._subscribed.wait(CONNECT_TIMEOUT_S):
            self.stop()
            raise BrokerError(f"no subscription at {self.broker_url} within "
                              f"{CONNECT_TIMEOUT_S:g} s (see the log for the broker's answer)")
        log.info("ingesting %s from %s into %s", self.topic_filters, self.broker_url,
                 self.db_path)
        return self

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             clean_session=False, protocol=MQTTProtocolVersion.MQTTv311,
                             manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        return client

    def stop(self) -> None:
        """Land and ack what is pending, disconnect and close the store (idempotent)."""
        self._stopping.set()
        if self._writer is not None:
            self._inbox.put(_STOP)
            self._writer.join()
            self._writer = None
        self._refusing.set()
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> Ingestor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # paho's network thread: hand over and return, nothing else.

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags,
                    reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            log.error("broker %s refused the connection: %s", self.broker_url, reason)
            return
        self._session += 1
        client.subscribe([(topic, 1) for topic in self.topic_filters])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Any) -> None:
        refused = [str(r) for r in reasons if r.is_failure]
        if refused:
            log.error("broker %s refused subscriptions: %s", self.broker_url, refused)
            return
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags,
                       reason: ReasonCode, properties: Any) -> None:
        if not self._refusing.is_set():
            log.warning("lost the broker %s (%s); reconnecting", self.broker_url, reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        delivery = _Delivery(msg.mid, msg.qos, self._session,
                             InboundMessage(msg.topic, bytes(msg.payload), time.time()))
        try:
            self._inbox.put_nowait(delivery)
            return
        except queue.Full:
            pass
        while not self._refusing.is_set():
            try:
                self._inbox.put(delivery, timeout=0.1)
                return
            except queue.Full:
                continue
        # Stopping or reconnecting: leave it unacked; the broker sends it to the next session.

    # The writer thread: decode, batch, land, ack, maintain.

    def _write_loop(self, writer: BatchWriter) -> None:
        batch: list[_Delivery] = []
        deadline = 0.0
        next_maintenance = time.monotonic() + self.maintenance_interval_s
        while True:
            wake = min(deadline, next_maintenance) if batch else next_maintenance
            got = self._take(timeout=max(0.0, wake - time.monotonic())
                             if batch or self.maintenance else None)
            if got and not batch:
                deadline = time.monotonic() + self.flush_interval_s
            stop = _STOP in got
            for delivery in got:
                if isinstance(delivery, _Delivery):
                    batch.append(delivery)
                    writer.add(delivery.item)
            self._board.add(messages_received=len(got) - int(stop))
            now = time.monotonic()
            if batch and (stop or writer.rows >= self.flush_rows or now >= deadline):
                self._flush(writer, batch)
                batch = []
            if stop:
                return
            if self.maintenance and now >= next_maintenance:
                writer.maintain(self.maintenance)
                next_maintenance = time.monotonic() + self.maintenance_interval_s

    def _take(self, timeout: float | None) -> list[object]:
        """One message (waiting up to ``timeout``) plus whatever else is already queued."""
        try:
            got = [self._inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(got) < 1000:
            try:
                got.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return got

    def _flush(self, writer: BatchWriter, batch: Sequence[_Delivery]) -> None:
        result = writer.flush()
        if result is None:
            # Not acked: the broker redelivers after a reconnect, and landing is idempotent.
            self._failures_in_row += 1
            self._restart_session()
            return
        self._failures_in_row = 0
        self._ack(batch)
        writer.committed(result)

    def _restart_session(self) -> None:
        """Reconnect after a backoff, so the broker resends what is left unacknowledged.

        MQTT 3.1.1 resends unacknowledged messages only on a new connection; without one
        they would also keep occupying the broker's in-flight window for this client.
        """
        delay = min(30.0, 0.25 * 2 ** (self._failures_in_row - 1))
        client = self._client
        if client is None or self._stopping.wait(delay):
            return
        host, port = parse_broker_url(self.broker_url)
        self._refusing.set()  # the network thread must not wait on a queue nobody drains
        client.disconnect()
        client.loop_stop()
        self._refusing.clear()
        client.connect_async(host, port, keepalive=KEEPALIVE_S)
        client.loop_start()
        log.info("reconnected to %s to get unacknowledged messages again", self.broker_url)

    def _ack(self, deliveries: Sequence[_Delivery]) -> None:
        client, session = self._client, self._session
        if client is None:
            return
        for delivery in deliveries:
            # A mid from an earlier connection may name another message now; the broker
            # resends those anyway and the resent copy is acked as a duplicate.
            if delivery.session == session:
                client.ack(delivery.mid, delivery.qos)


def run_forever(broker_url: str, db_path: str | Path, **options: Any) -> None:
    """Run an :class:`Ingestor` until SIGINT or SIGTERM, then stop it cleanly.

    ``options`` are :class:`Ingestor`'s keyword arguments. Prints nothing: the CLI does.

    Raises:
        StoreError: the DuckDB file cannot be opened for writing.
        BrokerError: the broker cannot be reached.
    """
    run_until_terminated(Ingestor(broker_url, db_path, **options))

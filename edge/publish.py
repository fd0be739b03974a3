"""Publishing the spool to an MQTT broker at QoS 1.

A message leaves the spool only when the broker has acknowledged it (PUBACK). paho's
callbacks run in its network thread while paho holds its own locks, so they only hand off
(append a message id to a deque, set an event); one publisher thread owns the spool's reading
side, sends entries while the link is up and retires the acknowledged ones. When the link is
down nothing is lost: entries wait on disk and go out after the reconnect, which paho retries
with a capped exponential backoff (``reconnect_min_s`` doubling up to ``reconnect_max_s``).

The publisher also speaks for the agent's health: a :class:`~edge.wire.contract.HealthReport`
with its counters every ``health_interval_s`` while connected, and the same report with
``online`` false registered as the MQTT last will, so the backend learns when a gateway
drops off without saying goodbye. Health reports are snapshots, sent directly, not spooled:
a stale one is worth less than the telemetry it would displace. TLS with client certificates
is used for ``mqtts://`` URLs (or whenever a CA file is given).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge.spool import Spool
from edge.wire import contract
from edge.wire.mqtt import TlsFiles, configure_tls, parse_mqtt_url

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """What the publisher has done so far."""

    connected: bool
    published: int
    acked: int
    inflight: int
    connects: int
    health_reports: int = 0

    @property
    def reconnects(self) -> int:
        """Connections after the first one."""
        return max(0, self.connects - 1)


@dataclass(frozen=True, slots=True)
class Health:
    """Where and how often to report the agent's counters."""

    vehicle_id: str
    counters: Callable[[], dict[str, float]]
    interval_s: float = 60.0


class Publisher:
    """Drains a :class:`Spool` to a broker, keeping at most ``window`` messages in flight.

    Args:
        spool: where messages wait.
        broker_url: ``mqtt://host:port``.
        client_id: the MQTT client id (one per vehicle).
        window: messages sent but not yet acknowledged, at most.
        health: periodic health reports and the last will; None sends neither.
        tls: certificate files; TLS is on for ``mqtts://`` URLs or when any file is given.
        reconnect_min_s, reconnect_max_s: the reconnect backoff's first and longest delay.
        on_ack: called with each spool sequence number the broker acknowledged (benchmarks).
    """

    def __init__(self, spool: Spool, broker_url: str, client_id: str, *, window: int = 32,
                 health: Health | None = None, tls: TlsFiles | None = None,
                 reconnect_min_s: int = 1, reconnect_max_s: int = 30,
                 on_ack: Callable[[int], None] | None = None) -> None:
        self._spool = spool
        self._host, self._port = parse_mqtt_url(broker_url)
        self._window = window
        self._health = health
        self._on_ack = on_ack
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=True)
        self._client.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=reconnect_max_s)
        configure_tls(self._client, broker_url, tls)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._acks: collections.deque[tuple[int, int]] = collections.deque()
        self._inflight: dict[int, int] = {}
        self._wake = threading.Event()
        self._emptied = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._published = self._acked = self._connects = self._health_reports = 0
        self._last_health = float("-inf")
        self._sent_up_to = 0
        self._session = 0
        self._thread = threading.Thread(target=self._run, name=f"publish-{client_id}",
                                        daemon=True)

    def start(self) -> None:
        """Connect (in the background: an unreachable broker is retried, not fatal)."""
        if self._health is not None:  # the last will: what the broker says if we vanish
            self._client.will_set(contract.health_topic(self._health.vehicle_id),
                                  self._health_payload(online=False), qos=1)
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        self._thread.start()

    def notify(self) -> None:
        """Tell the publisher the spool has new entries."""
        self._wake.set()

    def wait_drained(self, timeout: float) -> bool:
        """Block until the spool is empty (everything acknowledged) or the timeout passes.

        Woken by the publisher the moment its acknowledgements empty the spool, so a caller
        timing the drain sees when it happened, not the next turn of a polling loop.
        """
        deadline = time.monotonic() + timeout
        while not self._spool.empty():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._emptied.clear()
            if self._spool.empty():  # emptied between the check and the clear
                return True
            self._wake.set()
            self._emptied.wait(min(left, 0.02))
        return True

    def stop(self) -> None:
        """Say goodbye (a last health report), stop sending and disconnect.

        Unacknowledged entries stay in the spool for the next start.
        """
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        if self._health is not None and self._connected.is_set():
            info = self._client.publish(contract.health_topic(self._health.vehicle_id),
                                        self._health_payload(online=False), qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                info.wait_for_publish(timeout=2)
        self._client.disconnect()
        self._client.loop_stop()

    def stats(self) -> PublisherStats:
        """A snapshot of the counters."""
        return PublisherStats(self._connected.is_set(), self._published, self._acked,
                              len(self._inflight), self._connects, self._health_reports)

    def _health_payload(self, *, online: bool) -> bytes:
        assert self._health is not None
        counters = dict(self._health.counters())
        counters["reconnects"] = float(max(0, self._connects - 1))
        report = contract.HealthReport(f"{self._health.vehicle_id}-health-{uuid.uuid4().hex}",
                                       self._health.vehicle_id, time.time(), online, counters)
        return contract.encode(report)

    def _maybe_report_health(self) -> None:
        health = self._health
        if health is None or time.monotonic() - self._last_health < health.interval_s:
            return
        self._last_health = time.monotonic()
        self._client.publish(contract.health_topic(health.vehicle_id),
                             self._health_payload(online=True), qos=1)
        self._health_reports += 1

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: mqtt.ReasonCode, properties: object) -> None:
        if not reason.is_failure:
            self._connects += 1
            self._connected.set()
            self._wake.set()
        else:
            log.warning("broker %s:%s refused the connection: %s", self._host, self._port, reason)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: mqtt.ReasonCode, properties: object) -> None:
        self._connected.clear()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason: mqtt.ReasonCode, properties: object) -> None:
        self._acks.append((self._connects, mid))
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            done = self._take_acks()
            if self._connected.is_set():
                if self._connects != self._session:
                    # A new session: what was in flight may never be acknowledged, so send it
                    # again (the backend lands each message id once).
                    self._session = self._connects
                    self._inflight.clear()
                    self._sent_up_to = 0
                self._maybe_report_health()
                self._send_more()
            # Forgotten after sending more: the delete may wait for an append's fsync, and
            # the window it freed is better filled first.
            self._retire(done)

    def _take_acks(self) -> list[int]:
        """The spool entries acknowledged since the last turn (they leave the window)."""
        done = []
        while self._acks:
            session, mid = self._acks.popleft()
            if session != self._session:
                continue  # an acknowledgement from a connection whose flight was resent
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                done.append(seq)
        return done

    def _retire(self, done: list[int]) -> None:
        """Remove acknowledged entries from the spool (the broker has them)."""
        self._spool.ack_many(done)
        self._acked += len(done)
        if done and self._spool.empty():
            self._emptied.set()
        if self._on_ack is not None:
            for seq in done:
                self._on_ack(seq)

    def _send_more(self) -> None:
        """Send waiting entries in order, past those already in flight, up to the window."""
        while len(self._inflight) < self._window:
            entries = self._spool.entries_after(self._sent_up_to,
                                                limit=self._window - len(self._inflight))
            if not entries:
                return
            for entry in entries:
                info = self._client.publish(entry.topic, entry.payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    return
                self._inflight[info.mid] = entry.seq
                self._sent_up_to = entry.seq
                self._published += 1

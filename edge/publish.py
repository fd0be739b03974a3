"""Publishing the spool to an MQTT broker at QoS 1.

A message leaves the spool only when the broker has acknowledged it (PUBACK). paho's
callbacks run in its network thread while paho holds its own locks, so they only hand off
(append a message id to a deque, set an event); one publisher thread owns the spool's reading
side, sends entries while the link is up and retires the acknowledged ones. When the link is
down nothing is lost: entries wait on disk and go out after the reconnect.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from edge.errors import ConfigError
from edge.spool import Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """What the publisher has done so far."""

    connected: bool
    published: int
    acked: int
    inflight: int
    connects: int


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (or ``tcp://``, or bare ``host:port``) to (host, port)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ConfigError(f"broker URL {url!r} is not of the form mqtt://host:port")
    return parts.hostname, parts.port or 1883


class Publisher:
    """Drains a :class:`Spool` to a broker, keeping at most ``window`` messages in flight.

    Args:
        spool: where messages wait.
        broker_url: ``mqtt://host:port``.
        client_id: the MQTT client id (one per vehicle).
        window: messages sent but not yet acknowledged, at most.
    """

    def __init__(self, spool: Spool, broker_url: str, client_id: str, *, window: int = 32) -> None:
        self._spool = spool
        self._host, self._port = parse_mqtt_url(broker_url)
        self._window = window
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._acks: collections.deque[int] = collections.deque()
        self._inflight: dict[int, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._published = self._acked = self._connects = 0
        self._thread = threading.Thread(target=self._run, name=f"publish-{client_id}",
                                        daemon=True)

    def start(self) -> None:
        """Connect (in the background: an unreachable broker is retried, not fatal)."""
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()
        self._thread.start()

    def notify(self) -> None:
        """Tell the publisher the spool has new entries."""
        self._wake.set()

    def wait_drained(self, timeout: float) -> bool:
        """Block until the spool is empty (everything acknowledged) or the timeout passes."""
        done = threading.Event()
        deadline = threading.Timer(timeout, done.set)
        deadline.start()
        try:
            while not done.is_set():
                if not self._spool.pending():
                    return True
                self._wake.set()
                done.wait(0.02)
            return not self._spool.pending()
        finally:
            deadline.cancel()

    def stop(self) -> None:
        """Stop sending and disconnect; unacknowledged entries stay in the spool."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    def stats(self) -> PublisherStats:
        """A snapshot of the counters."""
        return PublisherStats(self._connected.is_set(), self._published, self._acked,
                              len(self._inflight), self._connects)

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
        self._acks.append(mid)
        self._wake.set()

    def _run(self) -> None:
        sessions_seen = 0
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            self._retire_acked()
            if self._connected.is_set():
                if self._connects != sessions_seen:
                    # A new session: what was in flight may never be acknowledged, so send it
                    # again (the backend lands each message id once).
                    sessions_seen = self._connects
                    self._inflight.clear()
                self._send_more()

    def _retire_acked(self) -> None:
        while self._acks:
            seq = self._inflight.pop(self._acks.popleft(), None)
            if seq is not None:
                self._spool.ack(seq)
                self._acked += 1

    def _send_more(self) -> None:
        busy = set(self._inflight.values())
        for seq in self._spool.pending():
            if len(self._inflight) >= self._window:
                return
            if seq in busy:
                continue
            entry = self._spool.read(seq)
            if entry is None:
                continue
            info = self._client.publish(entry.topic, entry.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return
            self._inflight[info.mid] = seq
            self._published += 1

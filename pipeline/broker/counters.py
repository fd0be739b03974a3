"""The broker's own drop counter (``$SYS``), read the way any MQTT client reads it, and a
watcher that keeps it readable.

mosquitto counts in ``$SYS/broker/publish/messages/dropped`` the publishes it acknowledged
and then threw away because a persistent session's queue was full (``max_queued_messages`` /
``max_queued_bytes``); the publisher saw a PUBACK, so nothing else shows that loss. (A publish
over ``message_size_limit`` is dropped too but, in mosquitto 2.0.11, not counted.) The counter
starts at 0 with every broker start; ``$SYS/broker/uptime`` (``"N seconds"``) says when.

What mosquitto 2.0.11 does with these topics, measured: it publishes a value retained, but
only when it changed (checked every ``sys_interval``), and with a message expiry of 60 s. So a
client that subscribes gets the drop counter only within a minute of its last change; a
counter that stood still longer (0 for days, or 15 since an hour ago) is simply absent. Hence
:class:`DropWatcher`: a client subscribed for as long as the broker runs, which sees every
change and keeps the latest total as a retained message without expiry on
:data:`WATCHED_TOPIC`. The one-machine broker (``fleetcare broker``) runs one;
:func:`read_broker_counters` prefers the ``$SYS`` value, then the watcher's record of the
same broker life, and otherwise says it saw no change (``dropped`` None).

Under the mutual-TLS listener a client's id is its certificate's name, so the reader must not
log in with ingest's certificate: its clean session would take over and discard ingest's
persistent one. It logs in as a monitor (``fleetcare-monitor``: the ACL lets it read only
``$SYS/broker/#``) and is refused, before it connects, when the certificate it was given is
a backend user's.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson
import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.x509.oid import NameOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge.wire import contract
from pipeline.broker.acl import BACKEND_USERS
from pipeline.broker.auth import (
    BackendTls,
    MqttCredentials,
    apply_client_auth,
    apply_client_tls,
    parse_broker_url,
    redact_url,
)
from pipeline.errors import BrokerError, TerminalPipelineError

log = logging.getLogger(__name__)

DROPPED_TOPIC: Final = "$SYS/broker/publish/messages/dropped"
UPTIME_TOPIC: Final = "$SYS/broker/uptime"
VERSION_TOPIC: Final = "$SYS/broker/version"
STORED_TOPIC: Final = "$SYS/broker/store/messages/count"
WATCHED_TOPIC: Final = f"{contract.TOPIC_ROOT}/broker/dropped"
"""Where :class:`DropWatcher` keeps the latest total (retained, JSON, no expiry)."""
SYS_RETAINED_S: Final = 60
"""How long mosquitto 2.0.11 keeps a ``$SYS`` value after publishing it (its expiry)."""
SAME_LIFE_TOLERANCE_S: Final = 60.0
"""Two broker start times (reading time minus uptime) this close are one broker life; the
uptime in ``$SYS`` is only as fresh as ``sys_interval`` (10 s by default)."""
READ_TIMEOUT_S: Final = 10.0
"""How long to wait for the uptime after connecting (the broker sends it at once)."""
GRACE_S: Final = 1.0
"""Once the uptime is in, how long the other retained values may lag behind it."""


class MonitorIdentityError(TerminalPipelineError):
    """The counters would be read with a certificate whose session must not be touched."""


@dataclass(frozen=True, slots=True)
class BrokerCounters:
    """What the broker said about itself.

    ``dropped`` is the number of acknowledged messages it dropped since ``started_at``, or
    None when no value was to be had: no watcher runs and the counter has not changed in the
    last :data:`SYS_RETAINED_S` seconds. ``watched`` says whether a watcher's record (every
    change seen) stands behind the value.
    """

    dropped: int | None
    uptime_s: int
    started_at: dt.datetime
    version: str = ""
    stored: int | None = None
    watched: bool = False


def certificate_name(cert: Path) -> str | None:
    """The common name of the PEM certificate ``cert`` (the MQTT user and client id it gets)."""
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    names = loaded.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def _uptime(text: str) -> int:
    return int(text.split()[0])


def _client(url: str, name: str, credentials: MqttCredentials | None,
            tls: BackendTls | None) -> mqtt.Client:
    if tls is not None and tls.cert is not None and tls.cert.is_file():
        cn = certificate_name(tls.cert)
        if cn in BACKEND_USERS:
            raise MonitorIdentityError(
                f"the broker's counters must not be read with {cn}'s certificate: under "
                "use_username_as_clientid that session is ingest's; issue one for "
                "fleetcare-monitor and name it in FLEETCARE_PIPELINE__MQTT_TLS_CERT/_KEY "
                "for the flows")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, clean_session=True,
                         client_id=f"{name}-{uuid.uuid4().hex[:12]}")
    apply_client_auth(client, url, credentials)
    apply_client_tls(client, url, tls)
    return client


def read_broker_counters(url: str, *, credentials: MqttCredentials | None = None,
                         tls: BackendTls | None = None,
                         timeout_s: float = READ_TIMEOUT_S) -> BrokerCounters:
    """Subscribe to the broker's counters (and a watcher's record), take what is retained,
    disconnect.

    Raises:
        MonitorIdentityError: ``tls`` names a backend user's certificate (fleetcare-ingest).
        BrokerError: the broker cannot be reached, refuses the login, or sends no
            ``$SYS/broker/uptime`` within ``timeout_s`` (the ACL does not grant
            ``$SYS/broker/#`` to this user, or ``sys_interval`` is 0).
    """
    shown = redact_url(url)
    host, port = parse_broker_url(url)
    client = _client(url, "fleetcare-health", credentials, tls)
    values: dict[str, bytes] = {}
    refused: list[str] = []
    topics = (DROPPED_TOPIC, UPTIME_TOPIC, VERSION_TOPIC, STORED_TOPIC, WATCHED_TOPIC)

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                   properties: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        else:
            c.subscribe([(t, 0) for t in topics])

    def on_message(c: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        values[message.topic] = bytes(message.payload)

    client.on_connect, client.on_message = on_connect, on_message
    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise BrokerError(f"cannot reach the broker at {shown} for its counters: {exc}"
                          ) from None
    try:
        deadline = time.monotonic() + timeout_s
        while not refused and time.monotonic() < deadline and len(values) < len(topics):
            if UPTIME_TOPIC in values:  # retained values come in one burst
                deadline = min(deadline, time.monotonic() + GRACE_S)
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                refused.append("the broker closed the connection")
    finally:
        client.disconnect()
    if refused:
        raise BrokerError(f"the broker at {shown} refused the counters' login: {refused[0]}")
    if UPTIME_TOPIC not in values:
        raise BrokerError(f"no {UPTIME_TOPIC} from {shown} within {timeout_s:g} s: grant this "
                          "user 'topic read $SYS/broker/#' in the ACL, and keep sys_interval "
                          "above 0")
    try:
        return _counters(values, dt.datetime.now(dt.UTC))
    except (ValueError, IndexError, TypeError, KeyError):
        raise BrokerError(f"{shown} sent counters this build cannot read: "
                          f"{ {k: v[:80] for k, v in values.items()} }") from None


def _counters(values: dict[str, bytes], now: dt.datetime) -> BrokerCounters:
    uptime = _uptime(values[UPTIME_TOPIC].decode())
    started = now - dt.timedelta(seconds=uptime)
    dropped: int | None = None
    watched = False
    if WATCHED_TOPIC in values:
        record = orjson.loads(values[WATCHED_TOPIC])
        recorded_start = dt.datetime.fromisoformat(record["broker_started_at"])
        if abs((recorded_start - started).total_seconds()) <= SAME_LIFE_TOLERANCE_S:
            dropped, watched = int(record["dropped"]), True
    if DROPPED_TOPIC in values:  # fresher than any record, or the same number
        dropped = max(int(values[DROPPED_TOPIC]), dropped or 0)
    stored = int(values[STORED_TOPIC]) if STORED_TOPIC in values else None
    return BrokerCounters(dropped, uptime, started,
                          values.get(VERSION_TOPIC, b"").decode("utf-8", "replace"),
                          stored, watched)


class DropWatcher:
    """Stays subscribed to the broker's drop counter and keeps its latest total readable.

    Each change of ``$SYS/broker/publish/messages/dropped`` is republished at once, retained
    and without expiry, on :data:`WATCHED_TOPIC` as ``{"dropped": N, "broker_started_at":
    ISO}``, so :func:`read_broker_counters` finds the total however long it stood still. It
    must start within :data:`SYS_RETAINED_S` of the broker (to get the first value); paho
    reconnects it if the broker goes away, and a restarted broker is a new life (and needs
    a new watcher, started with it).
    """

    def __init__(self, url: str, *, credentials: MqttCredentials | None = None,
                 tls: BackendTls | None = None) -> None:
        self._url, self._shown = url, redact_url(url)
        self._client = _client(url, "fleetcare-drop-watcher", credentials, tls)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._started: dt.datetime | None = None
        self._last: int | None = None
        self._lock = threading.Lock()
        self._first = threading.Event()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: ReasonCode, properties: Any) -> None:
        if reason.is_failure:
            log.warning("the drop watcher was refused by %s: %s", self._shown, reason)
            return
        client.subscribe([(DROPPED_TOPIC, 0), (UPTIME_TOPIC, 0)])

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
                    ) -> None:
        try:
            text = bytes(message.payload).decode()
            with self._lock:
                if message.topic == UPTIME_TOPIC:
                    if self._started is not None:
                        return
                    self._started = dt.datetime.now(dt.UTC) - dt.timedelta(
                        seconds=_uptime(text))
                else:
                    self._last = int(text)
                if self._last is None or self._started is None:
                    return  # both come in the first burst; record once both are in
                record = {"dropped": self._last,
                          "broker_started_at": self._started.isoformat()}
        except (ValueError, IndexError):
            log.warning("the drop watcher cannot read %r on %s", message.payload[:80],
                        message.topic)
            return
        client.publish(WATCHED_TOPIC, orjson.dumps(record), qos=1, retain=True)
        self._first.set()

    def start(self, timeout_s: float = READ_TIMEOUT_S) -> DropWatcher:
        """Connect and return once the first total is recorded.

        Raises:
            BrokerError: the broker cannot be reached or sent no counter in time.
        """
        host, port = parse_broker_url(self._url)
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise BrokerError(f"the drop watcher cannot reach {self._shown}: {exc}") from None
        self._client.loop_start()
        if not self._first.wait(timeout_s):
            self.stop()
            raise BrokerError(f"no {DROPPED_TOPIC} from {self._shown} within {timeout_s:g} s "
                              f"(a watcher must start with the broker: mosquitto keeps the "
                              f"value {SYS_RETAINED_S} s)")
        return self

    def stop(self) -> None:
        """Disconnect (the last record stays retained on the broker)."""
        self._client.disconnect()
        self._client.loop_stop()


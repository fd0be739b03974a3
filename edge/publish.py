"""Publishing the spool to an MQTT broker at QoS 1; retiring entries on the backend's receipt.

A message leaves the spool only when the backend's store has committed it. The broker's
PUBACK proves only that the broker holds the message in memory: a broker restarted without
persistence, or one whose queue for an offline ingest is full, has acknowledged messages it
no longer has. So with :class:`Receipts` a PUBACK only marks an entry *sent*; after each commit
ingest publishes a receipt on the vehicle's receipt topic naming the ids it stored, and the
receipt deletes the entries. An entry sent but not receipted ``timeout_s`` after its PUBACK is
sent again, and each further attempt waits twice as long, up to ``max_timeout_s``, so an
ingest outage does not turn into a flood of re-sends; the first receipt after a silence
longer than ``timeout_s`` (the backend is back) shortens those waits to ``timeout_s`` again,
so the backlog is not left waiting for the longest delay. A re-send is harmless: the backend
lands each message id once and receipts the copy as a duplicate. Meanwhile the entries stay
in the spool, bounded by its size and evicted by its policy like any other. Without receipts
(``receipts=None``: a backend that sends none, or a benchmark of the broker leg) the PUBACK
deletes the entry.

paho's callbacks run in its network thread while paho holds its own locks, so they only hand
off (append to a deque, set an event); one publisher thread owns the spool's reading side,
sends entries while the link is up, re-sends the overdue ones and retires the acknowledged
ones. When the link is down nothing is lost: entries wait on disk and go out after the
reconnect, which paho retries with a capped exponential backoff (a first delay drawn once per
publisher between ``reconnect_min_s`` and twice that, so a fleet dropped at once by a broker
restart does not come back in one instant, doubling up to ``reconnect_max_s``). The session
is clean, so the receipt topic is subscribed again on every connection, before anything is
published on it; a receipt the broker had for the agent while it was offline is lost with the
old session, and the entry it named is sent again after its timeout and receipted as a
duplicate.
Every failed attempt is logged with its reason (refused, unresolvable, TLS, login), so a
gateway that keeps spooling through an outage says why in its journal; a command that must
have the broker now (a replay, a simulation) waits with :meth:`Publisher.wait_connected` and
reports :attr:`Publisher.last_connect_error` itself.

The publisher also speaks for the agent's health: a :class:`~edge.wire.contract.HealthReport`
with its counters every ``health_interval_s`` while connected, and the same report with
``online`` false registered as the MQTT last will, so the backend learns when a gateway
drops off without saying goodbye. Health reports are snapshots, sent directly, not spooled:
a stale one is worth less than the telemetry it would displace. TLS with client certificates
is used for ``mqtts://`` URLs (or whenever a CA file is given).
"""

from __future__ import annotations

import collections
import heapq
import logging
import math
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt

from edge.errors import ContractError, SpoolError
from edge.spool import Spool
from edge.wire import contract
from edge.wire.mqtt import TlsFiles, configure_tls, parse_mqtt_url

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """What the publisher has done so far.

    ``published`` counts publish calls (re-sends included), ``acked`` the broker's PUBACKs
    (entries *sent*), ``inflight`` those still waiting for theirs. With receipts,
    ``receipted`` counts entries a receipt removed from the spool (``dead_lettered`` of them
    were stored by the backend as dead letters, not rows), ``resent`` the entries sent again
    for want of a receipt, ``awaiting_receipt`` the entries sent and not receipted yet, and
    ``bad_receipts`` receipts ignored as malformed or meant for another vehicle.
    """

    connected: bool
    published: int
    acked: int
    inflight: int
    connects: int
    health_reports: int = 0
    receipted: int = 0
    resent: int = 0
    awaiting_receipt: int = 0
    dead_lettered: int = 0
    bad_receipts: int = 0
    receipt_wait_s: float = 0.0
    """The longest an unreceipted entry now waits between re-sends (its grown backoff)."""

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


@dataclass(frozen=True, slots=True)
class Receipts:
    """Delete spool entries on the backend's receipts, not on the broker's PUBACK.

    ``vehicle_id`` names the receipt topic to follow; an entry the broker acknowledged but no
    receipt named is sent again ``timeout_s`` after its PUBACK, then after twice as long each
    time, up to ``max_timeout_s``.
    """

    vehicle_id: str
    timeout_s: float = 30.0
    max_timeout_s: float = 480.0


class _Unreceipted:
    """Where one sent but unreceipted entry stands (the publisher thread's alone, mutable)."""

    __slots__ = ("delay", "due")

    def __init__(self, delay: float) -> None:
        self.delay = delay
        """How long after its next PUBACK it is sent again."""
        self.due = math.inf
        """Monotonic time of the next re-send; infinite while in flight (no PUBACK yet)."""


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
        on_ack: called with each spool sequence number the broker acknowledged and the
            monotonic time its PUBACK arrived (benchmarks).
        receipts: delete entries on the backend's receipts (see :class:`Receipts`); None
            deletes them on the broker's PUBACK.
        quiet_first_connect: do not log failures before the first connection (the caller
            waits with :meth:`wait_connected` and reports the reason as one line itself).

    Raises:
        ContractError: ``receipts`` names an invalid vehicle id.
    """

    def __init__(self, spool: Spool, broker_url: str, client_id: str, *, window: int = 32,
                 health: Health | None = None, tls: TlsFiles | None = None,
                 reconnect_min_s: int = 1, reconnect_max_s: int = 30,
                 on_ack: Callable[[int, float], None] | None = None,
                 receipts: Receipts | None = None,
                 quiet_first_connect: bool = False) -> None:
        self._spool = spool
        self._host, self._port = parse_mqtt_url(broker_url)
        self._window = window
        self._refill = max(1, window // 2)
        """PUBACKs a full window waits for before the publisher is woken to send again."""
        self._health = health
        self._on_ack = on_ack
        self._receipts = receipts
        self._receipt_topic = (contract.receipt_topic(receipts.vehicle_id)
                               if receipts is not None else "")
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   clean_session=True)
        # Spread: a broker restart drops every gateway at once, and identical backoffs would
        # bring them all back in the same instant, past the broker's accept queue, again and
        # again. Each publisher's first delay is drawn once from [min, 2 x min).
        self.reconnect_first_delay_s = reconnect_min_s * random.uniform(1.0, 2.0)
        """This publisher's first reconnect delay (it doubles, up to ``reconnect_max_s``)."""
        self._client.reconnect_delay_set(min_delay=self.reconnect_first_delay_s,  # type: ignore[arg-type]
                                         max_delay=reconnect_max_s)
        configure_tls(self._client, broker_url, tls)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._backoff = (reconnect_min_s, reconnect_max_s)
        self._quiet_first_connect = quiet_first_connect
        self._last_error: str | None = None
        self._acks: collections.deque[tuple[int, int, float]] = collections.deque()
        self._inflight: dict[int, int] = {}
        self._receipt_payloads: collections.deque[bytes] = collections.deque()
        self._unreceipted: dict[int, _Unreceipted] = {}
        self._due: list[tuple[float, int]] = []
        """(due, seq) of sent entries, earliest first; stale pairs are skipped when popped."""
        self._receipted = self._resent = self._dead_lettered = self._bad_receipts = 0
        self._last_receipt = -math.inf
        self._wake = threading.Event()
        self._emptied = threading.Event()
        self._draining = 0
        """Callers in :meth:`wait_drained` now (each PUBACK wakes the publisher meanwhile)."""
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._published = self._acked = self._connects = self._health_reports = 0
        self._last_health = float("-inf")
        self._cursor = 0
        """Entries above this sequence number have not been sent by this process yet."""
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

    def wait_connected(self, timeout: float) -> bool:
        """Block until the broker has accepted a connection or ``timeout`` seconds pass."""
        return self._connected.wait(timeout)

    @property
    def last_connect_error(self) -> str | None:
        """Why the last connection attempt failed or the link dropped (None: no failure yet)."""
        return self._last_error

    def wait_drained(self, timeout: float) -> bool:
        """Block until the spool is empty (everything acknowledged) or the timeout passes.

        Woken by the publisher the moment its acknowledgements empty the spool, so a caller
        timing the drain sees when it happened, not the next turn of a polling loop. While
        someone waits here every PUBACK wakes the publisher (not only one that frees a full
        window): the last messages' PUBACKs are retired as they arrive, where they waited for
        this loop's next nudge, 20 ms on (in bench/edge.py's fast replay, 20 of its 600 ms).
        """
        deadline = time.monotonic() + timeout
        self._draining += 1
        try:
            return self._wait_empty(deadline)
        finally:
            self._draining -= 1

    def _wait_empty(self, deadline: float) -> bool:
        """:meth:`wait_drained`'s loop (every PUBACK wakes the publisher meanwhile)."""
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
        self._flush_acks()
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
                              len(self._inflight), self._connects, self._health_reports,
                              self._receipted, self._resent, len(self._unreceipted),
                              self._dead_lettered, self._bad_receipts,
                              max((u.delay for u in list(self._unreceipted.values())),
                                  default=0.0))

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
            if self._receipts is not None:
                # Queued before anything this connection publishes, so the broker holds the
                # subscription before any message it could receipt arrives.
                client.subscribe(self._receipt_topic, qos=1)
            self._connects += 1
            self._connected.set()
            self._wake.set()
        else:
            self._connect_failed(f"the broker refused the connection: {reason}")

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        # paho calls this from inside its ``except OSError`` around the attempt, without the
        # exception: it is still the one being handled.
        error = sys.exc_info()[1]
        self._connect_failed(_describe(error) if error is not None else "connection failed")

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: mqtt.ReasonCode, properties: object) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and reason.is_failure and not self._stop.is_set():
            self._last_error = f"connection lost: {reason}"
            log.warning("lost the connection to the broker at %s:%s (%s); reconnecting, "
                        "messages wait in the spool", self._host, self._port, reason)

    def _connect_failed(self, why: str) -> None:
        """Remember and (unless the caller reports it) log why an attempt failed."""
        self._last_error = why
        if self._quiet_first_connect and not self._connects:
            return
        log.warning("cannot connect to the broker at %s:%s: %s; retrying (backoff %d s "
                    "doubling to %d s), messages wait in the spool", self._host, self._port,
                    why, *self._backoff)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reasons: list[mqtt.ReasonCode], properties: object) -> None:
        if any(r.is_failure for r in reasons):
            log.warning("broker %s:%s refused the subscription to %s: no receipt can arrive, "
                        "so entries are sent again until they are evicted (check the ACL)",
                        self._host, self._port, self._receipt_topic)

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        if message.topic == self._receipt_topic:
            self._receipt_payloads.append(bytes(message.payload))
            self._wake.set()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason: mqtt.ReasonCode, properties: object) -> None:
        acks = self._acks
        acks.append((self._connects, mid, time.monotonic()))
        if self._draining or (len(self._inflight) >= self._window
                              and len(acks) >= self._refill):
            # Only a full window that has got back enough to refill, or a caller waiting for
            # the drain, wakes the publisher now. Otherwise the PUBACK is taken at its next
            # turn (the next spool append or 0.5 s): one thread wake-up for many PUBACKs, not
            # one each. A full window woken at every PUBACK took one ack and sent one message
            # per wake-up, about a thousand wake-ups of two threads in a fast replay's second.
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._wake.wait(0.5):
                # Half a second without an append: write the PUBACKs' deletes now rather
                # than hold them for an append that may not come (an idle or stopped bus).
                self._flush_acks()
            self._wake.clear()
            done = self._take_acks()
            self._take_receipts()
            if self._connected.is_set():
                if self._connects != self._session:
                    self._session = self._connects
                    self._new_session()
                self._maybe_report_health()
                self._resend_due()
                self._send_more()
            # Forgotten after sending more: the delete may wait for an append's fsync, and
            # the window it freed is better filled first.
            self._retire(done)

    def _flush_acks(self) -> None:
        """Write the deferred PUBACK deletes; a refusal is logged and retried later (the
        entries are out of the spool's view already, and at worst sent again after a
        restart)."""
        try:
            self._spool.flush_acks()
        except SpoolError as exc:
            log.warning("%s; they are written with the next append", exc)

    def _new_session(self) -> None:
        """What was in flight may never be acknowledged now, so it is sent again first.

        Without receipts that is every entry of the spool (all of them are unacknowledged);
        with receipts, the entries the broker did acknowledge wait at most ``timeout_s`` more.
        Either way the backend lands each message id once.
        """
        if self._receipts is None:
            self._inflight.clear()
            self._cursor = 0
            return
        now = time.monotonic()
        for seq in self._inflight.values():
            state = self._unreceipted.get(seq)
            if state is not None:
                state.due = now
                heapq.heappush(self._due, (now, seq))
        self._inflight.clear()
        # A receipt the broker held for the old (clean) session is gone with it, so no entry
        # waits out a backoff grown while the link was failing: after 2,000 vehicles lost
        # their links at once, their backlogs otherwise sat up to max_timeout_s (8 min).
        self._restart_waits(now, self._receipts)

    def _take_acks(self) -> list[tuple[int, float]]:
        """The spool entries acknowledged since the last turn (they leave the window), with
        the monotonic time each PUBACK arrived."""
        done = []
        while self._acks:
            session, mid, at = self._acks.popleft()
            if session != self._session:
                continue  # an acknowledgement from a connection whose flight was resent
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                done.append((seq, at))
        return done

    def _retire(self, done: list[tuple[int, float]]) -> None:
        """Act on PUBACKs: delete the entries (no receipts) or start their receipt timeouts
        (from when each PUBACK arrived)."""
        self._acked += len(done)
        if self._receipts is None:
            # Out of the spool's view now; the rows go in the next append's transaction.
            self._spool.ack_later([seq for seq, _ in done])
            if done and self._spool.empty():
                self._emptied.set()
        else:
            for seq, at in done:
                state = self._unreceipted.get(seq)
                if state is not None and state.due == math.inf:
                    state.due = at + state.delay
                    heapq.heappush(self._due, (state.due, seq))
        if self._on_ack is not None:
            for seq, at in done:
                self._on_ack(seq, at)

    def _take_receipts(self) -> None:
        """Delete the entries named by the receipts that arrived (the backend stored them)."""
        receipts = self._receipts
        while self._receipt_payloads and receipts is not None:
            payload = self._receipt_payloads.popleft()
            try:
                receipt = contract.decode_receipt(payload)
                if receipt.vehicle_id != receipts.vehicle_id:
                    raise ContractError(f"it is for vehicle {receipt.vehicle_id!r}")
            except ContractError as exc:
                self._bad_receipts += 1
                log.warning("ignored a receipt on %s: %s", self._receipt_topic, exc)
                continue
            removed = self._spool.receipt(receipt.msg_ids)
            for seq, _ in removed:
                self._unreceipted.pop(seq, None)
            self._receipted += len(removed)
            if receipt.dead_lettered:
                dead = set(receipt.dead_lettered)
                refused = sum(1 for _, msg_id in removed if msg_id in dead)
                self._dead_lettered += refused
                if refused:
                    log.info("the backend stored %d of this vehicle's messages as dead "
                             "letters (fleetcare deadletter show says why)", refused)
            now = time.monotonic()
            if now - self._last_receipt > receipts.timeout_s:
                self._restart_waits(now, receipts)
            self._last_receipt = now
            if removed and self._spool.empty():
                self._emptied.set()

    def _restart_waits(self, now: float, receipts: Receipts) -> None:
        """The backend answers again after a silence: no entry waits longer than
        ``timeout_s`` from now for its next attempt, whatever its backoff had grown to."""
        soon = now + receipts.timeout_s
        for seq, state in self._unreceipted.items():
            if state.delay > receipts.timeout_s:
                state.delay = receipts.timeout_s
                if soon < state.due < math.inf:
                    state.due = soon
                    heapq.heappush(self._due, (soon, seq))

    def _resend_due(self) -> None:
        """Send again, earliest timeout first, the entries whose receipt is overdue."""
        receipts = self._receipts
        if receipts is None:
            return
        now = time.monotonic()
        while self._due and self._due[0][0] <= now and len(self._inflight) < self._window:
            due, seq = heapq.heappop(self._due)
            state = self._unreceipted.get(seq)
            if state is None or state.due != due:
                continue  # receipted since, or rescheduled
            entry = self._spool.read(seq)
            if entry is None:  # evicted to make room for newer messages (and counted there)
                del self._unreceipted[seq]
                continue
            info = self._client.publish(entry.topic, entry.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                heapq.heappush(self._due, (due, seq))
                return
            self._inflight[info.mid] = seq
            state.due = math.inf
            state.delay = min(receipts.max_timeout_s, state.delay * 2)
            self._published += 1
            self._resent += 1

    def _send_more(self) -> None:
        """Send waiting entries in order, past those already sent, up to the window."""
        receipts = self._receipts
        while len(self._inflight) < self._window:
            room = self._window - len(self._inflight)
            entries = self._spool.entries_after(self._cursor, limit=room)
            for entry in entries:
                info = self._client.publish(entry.topic, entry.payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    return
                self._inflight[info.mid] = entry.seq
                if receipts is not None:
                    self._unreceipted[entry.seq] = _Unreceipted(receipts.timeout_s)
                self._cursor = entry.seq
                self._published += 1
            if len(entries) < room:
                return  # that was everything waiting: no second query to learn so


def _describe(error: BaseException) -> str:
    """An OS or TLS error as a short phrase (``[Errno 111] Connection refused``)."""
    text = str(error).strip()
    return text if text else type(error).__name__

"""The edge agent: read a CAN bus, decode, batch by rule, spool, publish.

One agent owns one bus (two readers of one bus split its frames between them). Its loop reads a
frame, decodes it, appends the mapped signals to a columnar batch, and writes the batch to the
spool when it holds ``batch_signals`` samples or ``batch_interval_s`` has passed; only then are
those samples counted as read. The publisher sends the spool to the broker. Fault-code frames
become fault-code events, which are spooled at once rather than with the next batch.

Samples are stamped with the frame's own timestamp (the driver's receive time, a log's
recorded time, or the simulator's simulated time), never with the time the agent got to it.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import can

from edge import contract
from edge.decode import Decoder
from edge.publish import Publisher
from edge.rules import DTC_STATUS_BY_VALUE, RuleSet, j2012_code
from edge.spool import Spool

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TapResult:
    """What a frame tap found in a frame: samples ``(ts, signal, value)`` and fault codes."""

    samples: tuple[tuple[float, str, float], ...] = ()
    dtcs: tuple[contract.DtcEvent, ...] = ()


class FrameTap(Protocol):
    """A decoder beside the DBC path that sees every frame (OBD-II, J1939 transport, UDS).

    Taps keep their own state (multi-frame reassembly, request/response pairing) and must
    never raise on a bad frame: count it and return None.
    """

    def feed(self, frame: can.Message) -> TapResult | None:
        """Look at one frame; return what it completed, if anything."""


@dataclass(frozen=True, slots=True)
class AgentStats:
    """Everything the agent counted; ``signals_spooled`` equals the rows the backend lands."""

    frames_read: int
    frames_decoded: int
    unknown_frames: int
    malformed_frames: int
    invalid_signals: int
    signals_spooled: int
    dtc_events: int
    messages_spooled: int


class Agent:
    """Reads one bus and feeds one spool.

    Args:
        vehicle_id: the vehicle this gateway speaks for.
        bus: the python-can bus to read (owned by this agent alone).
        decoder: the DBC decoder.
        rules: collection rules (published names, the fault-code message).
        spool: the on-disk spool the publisher drains.
        publisher: told when the spool grows; None when another component drains the spool.
        batch_signals: samples per telemetry message.
        batch_interval_s: longest a sample waits in a batch, in wall-clock seconds.
        taps: extra decoders that see every frame before the DBC decoder does.
        dtc_refresh_s: a fault code that stays active is reported again after this many
            seconds of bus time, so the backend can tell a code still present from a stale one.
    """

    def __init__(self, vehicle_id: str, bus: can.BusABC, decoder: Decoder, rules: RuleSet,
                 spool: Spool, publisher: Publisher | None, *, batch_signals: int = 500,
                 batch_interval_s: float = 1.0, dtc_refresh_s: float = 3600.0,
                 taps: Sequence[FrameTap] = ()) -> None:
        self.vehicle_id = vehicle_id
        self._bus = bus
        self._decoder = decoder
        self._names = rules.compile()
        self._dtc = rules.dtc
        self._spool = spool
        self._publisher = publisher
        self._batch_signals = batch_signals
        self._batch_interval_s = batch_interval_s
        self._session = uuid.uuid4().hex[:12]
        self._seq = 0
        self._ts: list[float] = []
        self._signal: list[str] = []
        self._value: list[float] = []
        self._batch_started = time.monotonic()
        self._taps = tuple(taps)
        self._dtc_refresh_s = dtc_refresh_s
        self._dtc_reported: dict[tuple[str, str, str, str], float] = {}
        self._frames_read = self._signals_spooled = self._dtc_events = self._messages = 0

    def run(self, stop: threading.Event, *, poll_s: float = 0.1,
            drain_limit: int = 100_000) -> None:
        """Read until ``stop`` is set, then read what the driver still holds and spool it all.

        ``drain_limit`` bounds the final read, so a stop on a busy bus still ends.
        """
        while not stop.is_set():
            frame = self._bus.recv(timeout=poll_s)
            if frame is not None:
                self.process(frame)
            if self._ts and time.monotonic() - self._batch_started >= self._batch_interval_s:
                self.flush()
        for _ in range(drain_limit):
            frame = self._bus.recv(timeout=0)
            if frame is None:
                break
            self.process(frame)
        self.flush()

    def drain(self, until: Callable[[], bool], *, poll_s: float = 0.05) -> None:
        """Read until ``until()`` holds and no frame is waiting (used by simulations)."""
        while True:
            frame = self._bus.recv(timeout=poll_s)
            if frame is not None:
                self.process(frame)
            elif until():
                return

    def process(self, frame: can.Message) -> None:
        """Decode one frame into the current batch; never raises on bad frames."""
        self._frames_read += 1
        if frame.is_error_frame or frame.is_remote_frame:
            return
        for tap in self._taps:
            found = tap.feed(frame)
            if found is not None:
                self._take(found)
        decoded = self._decoder.decode(frame.arbitration_id, frame.is_extended_id,
                                       bytes(frame.data))
        if decoded is None:
            return
        if self._dtc is not None and decoded.message == self._dtc.message:
            self._on_dtc(frame.timestamp, decoded.signals)
            return
        names = self._names.get(decoded.message, {})
        ts = frame.timestamp
        for signal, value in decoded.signals.items():
            mapped = names.get(signal)
            if mapped is None:
                name = f"{decoded.message}.{signal}"
            else:
                name, scale, offset = mapped
                value = value * scale + offset
            self._ts.append(ts)
            self._signal.append(name)
            self._value.append(value)
        if len(self._ts) >= self._batch_signals:
            self.flush()

    def flush(self) -> None:
        """Spool the current batch as one telemetry message."""
        self._batch_started = time.monotonic()
        if not self._ts:
            return
        batch = contract.TelemetryBatch(self._next_msg_id(), self.vehicle_id, self._ts,
                                        self._signal, self._value)
        self._spool.append(contract.telemetry_topic(self.vehicle_id), contract.encode(batch))
        self._signals_spooled += len(self._ts)
        self._messages += 1
        self._ts, self._signal, self._value = [], [], []
        if self._publisher is not None:
            self._publisher.notify()

    def stats(self) -> AgentStats:
        """A snapshot of the counters."""
        c = self._decoder.counters
        return AgentStats(self._frames_read, c.decoded, c.unknown, c.malformed,
                          c.invalid_signals, self._signals_spooled, self._dtc_events,
                          self._messages)

    def _on_dtc(self, ts: float, signals: dict[str, float]) -> None:
        assert self._dtc is not None
        raw_code = signals.get(self._dtc.code_signal)
        raw_status = signals.get(self._dtc.status_signal)
        status = DTC_STATUS_BY_VALUE.get(int(raw_status)) if raw_status is not None else None
        if raw_code is None or status is None:
            return
        ecu_signal = self._dtc.ecu_signal
        ecu = f"0x{int(signals[ecu_signal]):02X}" if ecu_signal and ecu_signal in signals else ""
        self._report_dtcs([contract.DtcEvent(ts, j2012_code(int(raw_code)), status, ecu, "can")])

    def _take(self, found: TapResult) -> None:
        """Add a tap's samples to the batch and report its fault codes at once."""
        for ts, name, value in found.samples:
            self._ts.append(ts)
            self._signal.append(name)
            self._value.append(value)
        if found.dtcs:
            self._report_dtcs(list(found.dtcs))
        if len(self._ts) >= self._batch_signals:
            self.flush()

    def _report_dtcs(self, events: list[contract.DtcEvent]) -> None:
        """Spool new, changed or refresh-due fault codes as one event message, right away."""
        fresh = []
        for event in events:
            key = (event.code, event.status, event.ecu, event.source)
            reported = self._dtc_reported.get(key)
            if reported is None or event.cleared or event.ts - reported >= self._dtc_refresh_s:
                self._dtc_reported[key] = event.ts
                fresh.append(event)
        if not fresh:
            return
        message = contract.DtcBatch(self._next_msg_id(), self.vehicle_id, fresh)
        self._spool.append(contract.dtc_topic(self.vehicle_id), contract.encode(message))
        self._dtc_events += len(fresh)
        self._messages += 1
        if self._publisher is not None:
            self._publisher.notify()

    def _next_msg_id(self) -> str:
        self._seq += 1
        return f"{self.vehicle_id}-{self._session}-{self._seq:010d}"

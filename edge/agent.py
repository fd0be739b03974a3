"""The edge agent: read a CAN source, decode, collect by rule, spool, publish.

One agent owns one source (two readers of one bus split its frames between them). Its loop
reads a frame, hands it to the frame taps and the DBC decoder, maps the decoded signals to
their published names, passes them through their collection mode, and appends what comes out
to a columnar batch. A batch is written to the spool when it holds ``batch_signals`` samples or
``batch_interval_s`` has passed; only then are its samples counted. The publisher sends the
spool to the broker. Fault-code frames become fault-code events and cranking becomes a crank
event, both spooled at once rather than with the next batch.

An agent given its :class:`~edge.identity.AgentIdentity` also spools a vehicle-info message
when it starts (the VIN absent: nothing read yet) and again, at once, whenever a frame tap
reads a VIN it has not reported yet (OBD-II mode 09 or J1939 PGN 0xFEEC); the backend
compares that VIN with the register's.

Reading a replay without frame taps, the loop takes frames many at a time as bare
``(timestamp, key, payload)`` tuples (:meth:`Agent.process_raw`), and each message the decoder
can compile gets a *sink*: generated code that decodes a frame straight into the batch's
columns under the published names (:func:`edge.decode.compile_sink`), remembering what each
recent payload decoded to, so a payload the bus repeats is copied rather than decoded again
(:func:`edge.decode.memo_sink`; a message whose payloads do not repeat drops the memory).
Messages with fault codes, cranking or collection windows, and anything cantools must
decode, take the general path, frame by frame; both paths spool the same samples in the same
order.

Samples are stamped with the frame's own timestamp (the driver's receive time, a log's
recorded time, or the simulator's simulated time), never with the time the agent got to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import can

from edge.batch import BatchWriter, Notifiable
from edge.cranking import CrankDetector
from edge.decode import CAN_EFF_FLAG, DecodedFrame, Decoder, Route, memo_sink
from edge.identity import AgentIdentity
from edge.logfile import NOT_DATA, RawFrame
from edge.rules import DTC_STATUS_BY_VALUE, RuleSet, j2012_code
from edge.source import FrameReader
from edge.spool import Spool
from edge.tap import FrameTap, TapResult
from edge.wire import contract

__all__ = ["Agent", "AgentStats", "FrameTap", "TapResult"]

log = logging.getLogger(__name__)

_NO_NAMES: dict = {}
"""The name table of a message no rule names (shared, never written)."""


_BUSY_BLOCK = 512
"""A raw read this large means the source had a backlog: the loop is not waiting anywhere."""


def _general(ts: float, data: bytes) -> int:
    """The sink of a frame key the general path handles: always 'not done here'."""
    return -1


def _not_data(ts: float, data: bytes) -> int:
    """The sink of error and remote frames: read, nothing to decode."""
    return 0


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
    filtered_frames: int = 0
    signals_not_collected: int = 0
    crank_events: int = 0
    unknown_ids: int = 0
    """How many distinct frame ids no DBC knows."""
    vin: str | None = None
    """The last VIN a frame tap read (None: none read)."""
    vin_source: str = "none"
    """How it was read (``edge.wire.contract.VIN_SOURCES``)."""


class Agent:
    """Reads one source and feeds one spool.

    Args:
        vehicle_id: the vehicle this gateway speaks for.
        bus: the source to read (owned by this agent alone).
        decoder: the DBC decoder.
        rules: collection rules (published names, modes, fault codes, cranking).
        spool: the on-disk spool the publisher drains.
        publisher: told when the spool grows; None when another component drains the spool.
        batch_signals: samples per telemetry message.
        batch_interval_s: longest a sample waits in a batch, in wall-clock seconds.
        taps: extra decoders that see every frame before the DBC decoder does.
        dtc_refresh_s: a fault code that stays active is reported again after this many
            seconds of bus time, so the backend can tell a code still present from a stale one.
        identity: the agent's version and file fingerprints; with it the agent spools
            vehicle-info messages (see :meth:`announce`), without it none.
    """

    def __init__(self, vehicle_id: str, bus: FrameReader, decoder: Decoder, rules: RuleSet,
                 spool: Spool, publisher: Notifiable | None, *, batch_signals: int = 500,
                 batch_interval_s: float = 1.0, dtc_refresh_s: float = 3600.0,
                 taps: Sequence[FrameTap] = (),
                 identity: AgentIdentity | None = None) -> None:
        self.vehicle_id = vehicle_id
        self._identity = identity
        self._vin: tuple[str | None, str] = (None, "none")
        self._vins_reported: set[tuple[str, str]] = set()
        self._frame_ts = 0.0
        """The timestamp of the frame the taps are looking at (a VIN they read is of then)."""
        self._bus = bus
        self._decoder = decoder
        self._names = rules.compile()
        self._unmapped = rules.publish_unmapped
        self._dtc = rules.dtc
        self._out = BatchWriter(vehicle_id, spool, publisher, batch_signals=batch_signals,
                                checkpoint=self._checkpoint)
        self._batch_interval_s = batch_interval_s
        self._batch_started = time.monotonic()
        self._taps = tuple(taps)
        self._crank = CrankDetector(rules.cranking) if rules.cranking else None
        self._crank_messages = rules.crank_messages()
        self._dtc_refresh_s = dtc_refresh_s
        self._dtc_reported: dict[tuple[str, str, str, str], float] = {}
        self._frames_read = self._dtc_events = self._not_collected = 0
        self._sinks: dict[int, Callable[[float, bytes], int]] = {NOT_DATA: _not_data}
        self._left = 0
        """Frames of the raw read in hand not processed yet (not covered by a checkpoint)."""
        self.loops = 0
        """Turns of the read loop: a watchdog sees the agent is alive when this grows."""

    def run(self, stop: threading.Event, *, poll_s: float = 0.1,
            drain_limit: int = 100_000) -> None:
        """Read until ``stop`` is set or the source ends, then read what is left and spool it.

        ``drain_limit`` bounds the final read, so a stop on a busy bus still ends. Spool writes
        go through the batch writer's background writer meanwhile; when this returns, all of
        them are stored and counted.
        """
        read_raw = None if self._taps else getattr(self._bus, "recv_raw", None)
        self._out.start_background()
        try:
            self.announce()
            self._read_until(stop, poll_s, read_raw)
            self._read_rest(drain_limit, read_raw)
            self.finish()
        except BaseException:
            self._out.stop_background(check=False)
            raise
        self._out.stop_background()

    def _read_until(self, stop: threading.Event, poll_s: float,
                    read_raw: Callable[..., list[RawFrame]] | None) -> None:
        while not stop.is_set() and not self._source_ended():
            self.loops += 1
            if read_raw is not None:
                frames = read_raw(poll_s)
                if frames:
                    self.process_raw(frames)
                    if len(frames) >= _BUSY_BLOCK:
                        # Let the publisher and spool threads take the GIL now, not when the
                        # interpreter next forces a switch (5 ms): a read loop that never
                        # waits would otherwise starve them, and messages would wait.
                        time.sleep(0)
            else:
                frame = self._bus.recv(timeout=poll_s)
                if frame is not None:
                    self.process(frame)
            if self._out.ts and time.monotonic() - self._batch_started >= self._batch_interval_s:
                self.flush()

    def _read_rest(self, limit: int, read_raw: Callable[..., list[RawFrame]] | None) -> None:
        """What the source already holds, at most ``limit`` frames, without waiting."""
        while limit > 0:
            if read_raw is not None:
                frames = read_raw(0, min(limit, 1024))
                if not frames:
                    return
                self.process_raw(frames)
                limit -= len(frames)
            else:
                frame = self._bus.recv(timeout=0)
                if frame is None:
                    return
                self.process(frame)
                limit -= 1

    def _checkpoint(self) -> tuple[str, int] | None:
        """Where a replayed source stands, saved with each spool append (None: a live bus)."""
        key = getattr(self._bus, "checkpoint_key", None)
        if not key:
            return None
        return key, int(self._bus.position) - self._left  # type: ignore[attr-defined]

    def _source_ended(self) -> bool:
        """True at the end of a recording (a live bus never ends)."""
        return bool(getattr(self._bus, "exhausted", False))

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
        self._frame_ts = frame.timestamp
        for tap in self._taps:
            found = tap.feed(frame)
            if found is not None:
                self._take(found)
        decoded = self._decoder.decode(frame.arbitration_id, frame.is_extended_id,
                                       bytes(frame.data))
        if decoded is not None:
            self._take_decoded(frame.timestamp, decoded)

    def process_raw(self, frames: Sequence[RawFrame]) -> None:
        """Decode many bare frames into the batch, as :meth:`process` would one by one.

        The fast path, for sources without frame taps: each frame goes to its key's compiled
        sink, or, for the messages sinks do not cover, through the general path.
        """
        sinks = self._sinks
        out = self._out
        columns, limit = out.ts, out.batch_signals
        count = len(frames)
        self._frames_read += count
        not_collected = 0
        out.hold()
        try:
            for i, (ts, key, data) in enumerate(frames):
                sink = sinks.get(key)
                if sink is None:
                    sink = self._sink(key)
                done = sink(ts, data)
                if done:
                    if done > 0:
                        not_collected += done
                    else:
                        self._left = count - i - 1  # what an event spooled now covers
                        decoded = self._decoder.decode(key & 0x1FFFFFFF,
                                                       bool(key & CAN_EFF_FLAG), data)
                        if decoded is not None:
                            self._take_decoded(ts, decoded)
                if len(columns) >= limit:
                    self._left = count - i - 1
                    self.flush()
        finally:
            out.release()
            self._left = 0
            self._not_collected += not_collected

    def _sink(self, key: int) -> Callable[[float, bytes], int]:
        """Compile the sink of a frame key (once per key) or send it the general way."""
        sink: Callable[[float, bytes], int] = _general
        found = self._decoder.lookup(key)
        if found is not None and found[1]:
            message = found[0]
            plan = self._decoder.plan(message)
            names = self._names.get(message.name, _NO_NAMES)
            special = (self._dtc is not None and message.name == self._dtc.message) or (
                self._crank is not None and message.name in self._crank_messages)
            if plan is not None and not special and all(
                    mapped[3] is None for mapped in names.values()):
                routes: dict[str, Route] = {}
                for signal in message.signals:
                    mapped = names.get(signal.name)
                    if mapped is not None:
                        routes[signal.name] = (mapped[0], mapped[1], mapped[2])
                    elif self._unmapped:
                        routes[signal.name] = (f"{message.name}.{signal.name}", None, 0.0)
                    else:
                        routes[signal.name] = None
                out = self._out

                def demote(plain: Callable[[float, bytes], int], key: int = key) -> None:
                    """The key's payloads do not repeat: the plain sink from its next frame."""
                    self._sinks[key] = plain

                sink = memo_sink(plan, routes, self._decoder.counters,
                                 (out.ts, out.signal, out.value), demote=demote)
        self._sinks[key] = sink
        return sink

    def _take_decoded(self, ts: float, decoded: DecodedFrame) -> None:
        """The general path after decoding: fault codes, cranking, rules, the batch."""
        if self._dtc is not None and decoded.message == self._dtc.message:
            self._on_dtc(ts, decoded.signals)
            return
        if self._crank is not None:
            self._watch_crank(ts, decoded.message, decoded.signals)
        names = self._names.get(decoded.message, _NO_NAMES)
        out = self._out
        ts_append, sig_append, val_append = out.ts.append, out.signal.append, out.value.append
        for signal, value in decoded.signals.items():
            mapped = names.get(signal)
            if mapped is None:
                if not self._unmapped:
                    self._not_collected += 1
                    continue
                ts_append(ts)
                sig_append(f"{decoded.message}.{signal}")
                val_append(value)
                continue
            name, scale, offset, collector = mapped
            if collector is None:
                ts_append(ts)
                sig_append(name)
                val_append(value * scale + offset)
            else:
                self._add(collector.feed(ts, value * scale + offset))
        if out.full():
            self.flush()

    def announce(self, ts: float | None = None) -> None:
        """Spool a vehicle-info message: this agent's identity and the VIN read so far.

        :meth:`run` calls it as the agent starts (the VIN is then absent); ``ts`` defaults to
        the wall clock. Nothing is spooled for an agent without an identity.
        """
        if self._identity is None:
            return
        vin, source = self._vin
        identity = self._identity
        self._out.spool_info(contract.VehicleInfo(
            self._out.next_msg_id(), self.vehicle_id, time.time() if ts is None else ts, vin,
            source, identity.agent_version, identity.dbc_fingerprints,
            identity.rules_fingerprint))

    def report_vin(self, vin: str, source: str, ts: float | None = None) -> None:
        """A frame tap read a valid VIN: spool vehicle info at once if it is news.

        News is a VIN (with its source) this run has not reported yet: two ECUs that answer
        with different VINs (a used ECU still carrying its donor car's) are reported once
        each, not at every read. ``source`` is ``obd_mode09`` or ``j1939_feec``; ``ts``
        defaults to the timestamp of the frame the taps are looking at (the one that
        completed the VIN).
        """
        self._vin = (vin, source)
        if (vin, source) in self._vins_reported:
            return
        self._vins_reported.add((vin, source))
        self.announce(self._frame_ts if ts is None else ts)

    def flush(self) -> None:
        """Spool the current batch as one telemetry message."""
        self._batch_started = time.monotonic()
        self._out.flush()

    def finish(self) -> None:
        """Close every open collection window, then spool the batch (the agent is stopping)."""
        for table in self._names.values():
            for _, _, _, collector in table.values():
                if collector is not None:
                    self._add(collector.flush())
        self.flush()

    def stats(self) -> AgentStats:
        """A snapshot of the counters."""
        c = self._decoder.counters
        return AgentStats(self._frames_read, c.decoded, c.unknown, c.malformed,
                          c.invalid_signals, self._out.signals_spooled, self._dtc_events,
                          self._out.messages, c.filtered, self._not_collected,
                          self._crank.events if self._crank else 0, len(c.unknown_ids),
                          *self._vin)

    def _add(self, samples: list[tuple[float, str, float]]) -> None:
        out = self._out
        for ts, name, value in samples:
            out.ts.append(ts)
            out.signal.append(name)
            out.value.append(value)

    def _watch_crank(self, ts: float, message: str, signals: dict[str, float]) -> None:
        """Feed the crank detector a decoded frame's signals, by DBC and by published name."""
        names = self._names.get(message, _NO_NAMES)
        for key, value in signals.items():
            full = f"{message}.{key}"
            self._feed_crank(ts, full, value)
            mapped = names.get(key)
            if mapped is not None and mapped[0] != full:
                self._feed_crank(ts, mapped[0], value * mapped[1] + mapped[2])

    def _feed_crank(self, ts: float, name: str, value: float) -> None:
        assert self._crank is not None
        rule = self._crank.rule
        if name == rule.voltage:
            self._crank.on_voltage(ts, value)
        elif name == rule.engine_speed:
            event = self._crank.on_speed(ts, value)
            if event:
                self._out.spool_event(event)

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
        """Add a tap's samples to the batch and report its fault codes at once; the crank
        detector sees them too (an OBD-II car's voltage and engine speed are PID answers)."""
        if self._crank is not None:
            for ts, name, value in found.samples:
                self._feed_crank(ts, name, value)
        self._add(list(found.samples))
        if found.dtcs:
            self._report_dtcs(list(found.dtcs))
        if self._out.full():
            self.flush()

    def _report_dtcs(self, events: list[contract.DtcEvent]) -> None:
        """Spool new, changed or refresh-due fault codes as one event message, right away."""
        fresh = []
        for event in events:
            key = (event.code, event.status, event.ecu, event.source)
            if event.cleared:
                # Forget the code, so its return is news however soon it comes.
                self._dtc_reported.pop(key, None)
                fresh.append(event)
                continue
            reported = self._dtc_reported.get(key)
            if reported is None or event.ts - reported >= self._dtc_refresh_s:
                self._dtc_reported[key] = event.ts
                fresh.append(event)
        if fresh:
            self._out.spool_dtcs(fresh)
            self._dtc_events += len(fresh)

"""Passive OBD-II decoder: lands PID values, fault codes and the VIN from traffic it overhears.

It recognises requests (functional 0x7DF and 29-bit 0x18DB33F1, physical 0x7E0-0x7E7 and
0x18DAxxF1) and answers (0x7E8-0x7EF and 0x18DAF1xx), rebuilds answers with ISO-TP
reassembly (single and multi-frame) and decodes them with the same parsers as the active
paths. Answers are self-describing (0x41 + PID, 0x43 + codes, 0x49 02 + VIN), so a log whose
requests were not recorded still decodes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import can

from edge.diag.answers import NegativeAnswer, decode_answer
from edge.diag.dtc import DtcAnswer, DtcTracker
from edge.diag.errors import DiagParseError
from edge.diag.pids import PidAnswer
from edge.diag.reassembly import Reassembler
from edge.tap import FrameTap, TapResult
from edge.wire.contract import DtcEvent

FUNCTIONAL_11 = 0x7DF
FUNCTIONAL_29 = 0x18DB33F1
_LAST_11 = 0x7EF
"""The highest 11-bit OBD-II id (answers 0x7E8-0x7EF; requests 0x7DF, 0x7E0-0x7E7)."""


def ecu_of_response(can_id: int, extended: bool) -> str | None:
    """The answering ECU of an OBD-II response id, or None when the id is no response."""
    if not extended and 0x7E8 <= can_id <= 0x7EF:
        return f"0x{can_id:03X}"
    if extended and (can_id & 0x1FFFFF00) == 0x18DAF100:
        return f"0x{can_id & 0xFF:02X}"
    return None


def is_request(can_id: int, extended: bool) -> bool:
    """Whether the id carries OBD-II requests (functional or physical, 11 or 29 bit)."""
    if not extended:
        return can_id == FUNCTIONAL_11 or 0x7E0 <= can_id <= 0x7E7
    return can_id == FUNCTIONAL_29 or (can_id & 0x1FFF00FF) == 0x18DA00F1


@dataclass
class ObdCounters:
    """What the tap saw: requests, answers decoded, refusals, parse errors, unknown PIDs."""

    requests: int = 0
    answers: int = 0
    negative: int = 0
    parse_errors: int = 0
    unknown_pids: dict[int, int] = field(default_factory=dict)


class ObdTap(FrameTap):
    """A ``FrameTap`` for OBD-II traffic; ``vin`` holds the last valid VIN heard.

    ``on_vin`` is called with the VIN whenever a valid one differs from the last, so the agent
    can publish it once per change (a ``TapResult`` carries only numbers and fault codes).
    """

    def __init__(self, on_vin: Callable[[str], None] | None = None) -> None:
        self.vin: str | None = None
        self._on_vin = on_vin
        self.supported: dict[str, set[int]] = {}
        self.counters = ObdCounters()
        self._reassembler = Reassembler()
        self._tracker = DtcTracker("obd")

    @property
    def reassembly(self) -> Reassembler:
        """The ISO-TP reassembler (its counters say how many frames broke a message)."""
        return self._reassembler

    def feed(self, frame: can.Message) -> TapResult | None:
        """Look at one frame; return the values or fault codes of an answer it completes."""
        can_id, extended = frame.arbitration_id, frame.is_extended_id
        if not extended and not FUNCTIONAL_11 <= can_id <= _LAST_11:
            return None  # most frames on a bus: no OBD-II id at all, decided in one test
        ecu = ecu_of_response(can_id, extended)
        if ecu is None:
            if is_request(can_id, extended) and frame.data and frame.data[0] >> 4 != 3:
                self.counters.requests += 1  # flow control frames are not requests
            return None
        payload = self._reassembler.feed(can_id, bytes(frame.data))
        if payload is None:
            return None
        return self.take(frame.timestamp, ecu, payload)

    def take(self, ts: float, ecu: str, payload: bytes) -> TapResult | None:
        """Decode one complete answer from ``ecu`` (also used by the active paths)."""
        try:
            answer = decode_answer(payload)
        except DiagParseError:
            self.counters.parse_errors += 1
            return None
        self.counters.answers += 1
        if isinstance(answer, PidAnswer):
            return self._pids(ts, ecu, answer)
        if isinstance(answer, DtcAnswer):
            return TapResult(dtcs=tuple(self.dtc_events(ts, ecu, answer)))
        if isinstance(answer, str):
            self._set_vin(answer)
        elif isinstance(answer, NegativeAnswer):
            self.counters.negative += 1
        return None

    def dtc_events(self, ts: float, ecu: str, answer: DtcAnswer) -> list[DtcEvent]:
        """Fault-code events for one complete answer (present codes and cleared ones)."""
        return self._tracker.update(ts, ecu, answer)

    def _set_vin(self, vin: str) -> None:
        changed = vin != self.vin
        self.vin = vin
        if changed and self._on_vin is not None:
            self._on_vin(vin)

    def _pids(self, ts: float, ecu: str, answer: PidAnswer) -> TapResult | None:
        if answer.supported:
            self.supported.setdefault(ecu, set()).update(answer.supported)
        if answer.unknown_pid is not None:
            pid = answer.unknown_pid
            self.counters.unknown_pids[pid] = self.counters.unknown_pids.get(pid, 0) + 1
        if not answer.values:
            return None
        return TapResult(samples=tuple((ts, pid.signal, value) for pid, value in answer.values))

"""Passive ISO-TP (ISO 15765-2) reassembly: rebuild diagnostic messages from recorded frames.

A listener cannot take part in flow control, it only watches: single frames carry the whole
message, a first frame announces the length and consecutive frames follow with a sequence
number that wraps from 15 to 0. One reassembly runs per CAN id. A consecutive frame out of
sequence, or without a first frame, abandons that message and is counted, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Partial:
    total: int
    data: bytearray
    next_seq: int


@dataclass
class ReassemblyCounters:
    """Messages completed, frames that broke a message, flow-control frames seen."""

    messages: int = 0
    malformed: int = 0
    flow_control: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class Reassembler:
    """Rebuilds ISO-TP messages per CAN id from frames fed in bus order."""

    def __init__(self) -> None:
        self._open: dict[int, _Partial] = {}
        self.counters = ReassemblyCounters()

    def feed(self, can_id: int, data: bytes) -> bytes | None:
        """The complete message this frame finishes, if any."""
        if not data:
            return self._bad("empty frame")
        kind = data[0] >> 4
        if kind == 0:
            return self._single(data)
        if kind == 1:
            return self._first(can_id, data)
        if kind == 2:
            return self._consecutive(can_id, data)
        if kind == 3:
            self.counters.flow_control += 1
            return None
        return self._bad("unknown frame type")

    def _single(self, data: bytes) -> bytes | None:
        size, start = data[0] & 0x0F, 1
        if size == 0 and len(data) > 8:
            size, start = data[1], 2
        if size == 0 or size > len(data) - start:
            return self._bad("single frame length")
        return self._done(bytes(data[start:start + size]))

    def _first(self, can_id: int, data: bytes) -> bytes | None:
        self._open.pop(can_id, None)
        if len(data) < 3:
            return self._bad("short first frame")
        total = ((data[0] & 0x0F) << 8) | data[1]
        if total < 8:
            return self._bad("first frame length")
        self._open[can_id] = _Partial(total, bytearray(data[2:]), 1)
        return None

    def _consecutive(self, can_id: int, data: bytes) -> bytes | None:
        partial = self._open.get(can_id)
        if partial is None:
            return self._bad("consecutive frame without a first frame")
        if data[0] & 0x0F != partial.next_seq:
            del self._open[can_id]
            return self._bad("consecutive frame out of sequence")
        partial.data += data[1:]
        partial.next_seq = (partial.next_seq + 1) & 0x0F
        if len(partial.data) < partial.total:
            return None
        del self._open[can_id]
        return self._done(bytes(partial.data[:partial.total]))

    def _done(self, message: bytes) -> bytes:
        self.counters.messages += 1
        return message

    def _bad(self, reason: str) -> bytes | None:
        self.counters.malformed += 1
        self.counters.by_reason[reason] = self.counters.by_reason.get(reason, 0) + 1
        return None

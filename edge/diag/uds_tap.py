"""Passive UDS decoder: battery data from the answers to a tester's 0x22 / 0x21 requests.

The tap listens on the answer id of each configured make's map, rebuilds answers with ISO-TP
reassembly and decodes them with the map. Answers the map does not describe, and refusals,
are counted, never raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import can

from edge.diag.errors import DiagParseError
from edge.diag.reassembly import Reassembler
from edge.diag.uds_map import DidMap, parse_uds_answer
from edge.tap import FrameTap, TapResult


@dataclass
class UdsCounters:
    """Frames the tester sent (requests and flow control), answers decoded, answers not."""

    request_frames: int = 0
    answers: int = 0
    parse_errors: int = 0


class UdsTap(FrameTap):
    """A ``FrameTap`` decoding UDS battery data with one or more per-make DID maps."""

    def __init__(self, maps: Sequence[DidMap]) -> None:
        self._by_response = {(m.response_id, m.extended_id): m for m in maps}
        self._requests = {(m.request_id, m.extended_id) for m in maps}
        self._reassembler = Reassembler()
        self.counters = UdsCounters()
        self.last_error = ""

    def feed(self, frame: can.Message) -> TapResult | None:
        """Look at one frame; return the values of an answer it completes."""
        key = (frame.arbitration_id, frame.is_extended_id)
        did_map = self._by_response.get(key)
        if did_map is None:
            if key in self._requests:
                self.counters.request_frames += 1
            return None
        payload = self._reassembler.feed(frame.arbitration_id, bytes(frame.data))
        if payload is None:
            return None
        try:
            values = parse_uds_answer(payload, did_map)
        except DiagParseError as exc:
            self.counters.parse_errors += 1
            self.last_error = str(exc)
            return None
        self.counters.answers += 1
        ts = frame.timestamp
        return TapResult(samples=tuple((ts, name, value) for name, value in values))

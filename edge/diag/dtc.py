"""OBD-II fault-code answers (modes 03, 07, 0A) and the one fault-code record for all of them.

An answer is the positive response id (0x43 stored, 0x47 pending, 0x4A permanent) followed by
two bytes per code. On CAN, SAE J1979 puts a count byte before the codes; several emulators
and some ECUs leave it out. Two bytes per code make the two forms tell themselves apart: an
odd number of bytes after the response id means the count byte is there. ``43 00`` is the
count byte saying "none", an empty list. ``00 00`` pairs are padding (P0000 is no fault).

``DtcTracker`` turns successive answers into events: every code present (first and last seen
kept per code), and a ``cleared`` event for a code that was there and is gone, so a code
appearing or clearing is reported at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edge.diag.errors import DiagParseError
from edge.rules import j2012_code
from edge.wire.contract import DtcEvent
from edge.wire.fault_codes import describe

STATUS_BY_RESPONSE = {0x43: "stored", 0x47: "pending", 0x4A: "permanent"}
"""Positive response id of modes 03, 07 and 0A -> the contract's status name."""

REQUEST_BY_STATUS = {"stored": 0x03, "pending": 0x07, "permanent": 0x0A}


@dataclass(frozen=True, slots=True)
class DtcAnswer:
    """The codes of one answer, upper-case J2012, in the order the ECU gave them."""

    status: str
    codes: tuple[str, ...]


def parse_dtc_answer(payload: bytes) -> DtcAnswer:
    """Decode a mode 03/07/0A answer that starts with its response id.

    Raises:
        DiagParseError: not a fault-code answer, or the count byte promises more codes
            than the answer holds.
    """
    if not payload:
        raise DiagParseError("empty fault-code answer: expected 0x43, 0x47 or 0x4A first")
    status = STATUS_BY_RESPONSE.get(payload[0])
    if status is None:
        raise DiagParseError(f"0x{payload[0]:02X} is not a fault-code answer (0x43/0x47/0x4A)")
    body = payload[1:]
    if not body:
        raise DiagParseError(f"fault-code answer 0x{payload[0]:02X} has neither count nor codes")
    if len(body) % 2:
        count, body = body[0], body[1:]
        if count * 2 > len(body):
            raise DiagParseError(
                f"count byte says {count} codes but the answer holds {len(body) // 2}"
            )
        body = body[: count * 2]
    return DtcAnswer(status, tuple(_codes(body)))


def _codes(body: bytes) -> Iterable[str]:
    for i in range(0, len(body), 2):
        raw = (body[i] << 8) | body[i + 1]
        if raw:
            yield j2012_code(raw)


class DtcTracker:
    """Remembers which codes each ECU reported per status, to report changes at once."""

    def __init__(self, source: str, describe_code: Callable[[str], str] = describe) -> None:
        self.source = source
        self._describe = describe_code
        self._present: dict[tuple[str, str], dict[str, float]] = {}

    def update(self, ts: float, ecu: str, answer: DtcAnswer) -> list[DtcEvent]:
        """Events for one complete answer: each present code, and each code now gone."""
        key = (ecu, answer.status)
        before = self._present.get(key, {})
        now = {code: before.get(code, ts) for code in answer.codes}
        self._present[key] = now
        events = [self._event(ts, ecu, answer.status, code, first, False)
                  for code, first in now.items()]
        events += [self._event(ts, ecu, answer.status, code, first, True)
                   for code, first in before.items() if code not in now]
        return events

    def present(self) -> dict[tuple[str, str], tuple[str, ...]]:
        """(ecu, status) -> codes currently present."""
        return {key: tuple(codes) for key, codes in self._present.items()}

    def _event(self, ts: float, ecu: str, status: str, code: str, first: float,
               cleared: bool) -> DtcEvent:
        return DtcEvent(ts, code, status, ecu, self.source, cleared, first, ts,
                        self._describe(code))

"""One entry point for any OBD-II answer, whichever path brought it (log, ISO-TP, ELM327).

``decode_answer`` looks at the response id and hands the payload to the matching parser, so
the passive tap, the ISO-TP client and the ELM327 reader share every decoder.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.diag.dtc import STATUS_BY_RESPONSE, DtcAnswer, parse_dtc_answer
from edge.diag.errors import DiagParseError
from edge.diag.pids import PidAnswer, parse_pid_answer
from edge.diag.vin import parse_vin_answer


@dataclass(frozen=True, slots=True)
class NegativeAnswer:
    """A UDS/OBD negative response ``7F <service> <code>``."""

    service: int
    code: int


Answer = PidAnswer | DtcAnswer | str | NegativeAnswer | None
"""A PID answer, a fault-code answer, a VIN, a refusal, or None for services we do not read."""


def decode_answer(payload: bytes) -> Answer:
    """Decode one complete OBD-II answer.

    Raises:
        DiagParseError: the answer is malformed for its service.
    """
    if not payload:
        raise DiagParseError("empty answer")
    sid = payload[0]
    if sid == 0x41:
        return parse_pid_answer(payload)
    if sid in STATUS_BY_RESPONSE:
        return parse_dtc_answer(payload)
    if sid == 0x49 and len(payload) >= 2 and payload[1] == 0x02:
        return parse_vin_answer(payload)
    if sid == 0x7F:
        if len(payload) < 3:
            raise DiagParseError("a negative answer is 7F, the service and a reason code")
        return NegativeAnswer(payload[1], payload[2])
    return None

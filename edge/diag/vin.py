"""The VIN from mode 09 PID 02, decoded by our own code and validated.

python-OBD's string decoder strips leading and trailing ``0``, ``1`` and ``2`` characters,
which are legitimate VIN characters, so the VIN is read from the raw answer here. On CAN the
answer is ``49 02 01`` (message count) and 17 ASCII characters; legacy protocols and some
adapters pad with zero bytes in front, which are dropped. A VIN is 17 characters of digits
and capital letters other than I, O and Q (ISO 3779), and never one character 17 times (an
unprogrammed ECU's placeholder): the rules of :mod:`edge.wire.vin`, which the backend applies
too.
"""

from __future__ import annotations

from edge.diag.errors import DiagParseError
from edge.wire.vin import vin_problem


def parse_vin_answer(payload: bytes) -> str:
    """Decode and validate the VIN in a mode 09 PID 02 answer (starting with ``49 02``).

    Raises:
        DiagParseError: not a VIN answer, or the characters are not a valid VIN.
    """
    if len(payload) < 3 or payload[0] != 0x49 or payload[1] != 0x02:
        raise DiagParseError("a VIN answer starts with 49 02")
    body = payload[3:] if payload[2] == 0x01 and len(payload) >= 20 else payload[2:]
    return validate_vin(bytes(body).lstrip(b"\x00").decode("ascii", errors="replace"))


def validate_vin(text: str) -> str:
    """Return ``text`` when it is a valid 17-character VIN.

    Raises:
        DiagParseError: says what is wrong with it.
    """
    problem = vin_problem(text)
    if problem is not None:
        raise DiagParseError(problem)
    return text

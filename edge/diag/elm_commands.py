"""python-OBD commands that python-OBD lacks or decodes lossily, backed by our decoders.

For code that already drives an ``obd.OBD`` connection: mode 0A (permanent codes) has no
python-OBD command at all, and its mode 03/07 and VIN decoders lose information (see
``edge.diag.elm``). Each command here sends the raw request and decodes the answer with the
same parsers as every other path. Use them with ``connection.query(cmd, force=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edge.diag.dtc import parse_dtc_answer
from edge.diag.elm_answers import answers_of
from edge.diag.errors import DiagParseError
from edge.diag.vin import parse_vin_answer
from edge.wire.fault_codes import describe


def decode_codes(messages: Sequence[Any]) -> list[tuple[str, str]]:
    """``(code, description)`` for every code in the answers of every ECU."""
    codes: list[tuple[str, str]] = []
    for _, payload in answers_of(messages):
        try:
            codes += [(code, describe(code)) for code in parse_dtc_answer(payload).codes]
        except DiagParseError:
            continue
    return codes


def decode_vin(messages: Sequence[Any]) -> str | None:
    """The first valid VIN among the answers, or None."""
    for _, payload in answers_of(messages):
        try:
            return parse_vin_answer(payload)
        except DiagParseError:
            continue
    return None


def obd_commands() -> dict[str, Any]:
    """``GET_DTC`` (03), ``GET_PENDING_DTC`` (07), ``GET_PERMANENT_DTC`` (0A) and ``VIN``."""
    from obd import OBDCommand
    from obd.protocols import ECU

    specs = (("GET_DTC", "Stored DTCs", b"03", decode_codes),
             ("GET_PENDING_DTC", "Pending DTCs", b"07", decode_codes),
             ("GET_PERMANENT_DTC", "Permanent DTCs", b"0A", decode_codes),
             ("VIN", "Vehicle Identification Number", b"0902", decode_vin))
    return {name: OBDCommand(name, f"{desc} (fleetcare decoder)", cmd, 0, decoder, ECU.ALL,
                             False)
            for name, desc, cmd, decoder in specs}

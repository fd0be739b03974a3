"""Our python-OBD commands against python-OBD's own, on the same parsed adapter lines.

python-OBD's protocol classes turn ELM327 output lines into messages exactly as on a live
adapter, so the decoders are compared here without an emulator.
"""

from __future__ import annotations

import pytest

from edge.diag.elm_answers import answers_of
from edge.diag.elm_commands import decode_codes, decode_vin, obd_commands

obd = pytest.importorskip("obd", reason="python-OBD (the elm extra) is not installed")
from obd.protocols import ISO_15765_4_11bit_500k, ISO_15765_4_29bit_500k  # noqa: E402

VIN_LINES = ["7E81014490201575030", "7E8215A5A5A39395A54", "7E82253333930303030"]


def test_vin_keeps_the_zeros_python_obd_strips() -> None:
    messages = ISO_15765_4_11bit_500k([])(VIN_LINES)
    assert bytes(obd.commands.VIN.decode(messages)) == b"WP0ZZZ99ZTS39"     # python-OBD
    assert decode_vin(messages) == "WP0ZZZ99ZTS390000"                       # ours


def test_codes_without_count_byte_where_python_obd_misreads() -> None:
    messages = ISO_15765_4_11bit_500k([])(["7E805430A800562"])
    assert [c for c, _ in obd.commands.GET_DTC.decode(messages)] != ["P0A80", "P0562"]
    assert decode_codes(messages) == [("P0A80", "Replace hybrid/EV battery pack"),
                                      ("P0562", "System voltage low")]


def test_permanent_codes_command_that_python_obd_lacks() -> None:
    assert not hasattr(obd.commands, "GET_PERMANENT_DTC")
    commands = obd_commands()
    assert commands["GET_PERMANENT_DTC"].command == b"0A"
    messages = ISO_15765_4_29bit_500k([])(["18DAF110064A0140350000"])
    assert commands["GET_PERMANENT_DTC"].decode(messages) == [
        ("C0035", "Left front wheel speed sensor circuit")]
    assert answers_of(messages) == [("0x10", bytes.fromhex("4A0140350000"))]


def test_several_ecus_and_empty_answers() -> None:
    messages = ISO_15765_4_11bit_500k([])(["7E8024300", "7EA03430A7F"])
    assert answers_of(messages) == [("0x7E8", b"\x43\x00"), ("0x7EA", b"\x43\x0a\x7f")]
    assert decode_codes(messages) == [("P0A7F", "Hybrid/EV battery pack deterioration")]

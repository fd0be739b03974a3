"""The ELM327 path against ELM327-emulator (test-only, CC-BY-NC-SA-4.0), on TCP and on a pty.

The emulator is configured with stored, pending and permanent codes; its mode 03/07/0A answers
carry no CAN count byte, and its VIN ends in ``0000``, which python-OBD's own decoder strips.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from diag_helpers import elm_emulator

from edge.diag.elm import ElmConnection
from edge.diag.errors import DiagLinkError
from edge.diag.obd_tap import ObdTap
from edge.diag.reader import clear_codes, read_dtcs, read_once
from flows.cli.main import main

pytest.importorskip("elm", reason="ELM327-emulator (the test-only extra) is not installed")
pytest.importorskip("obd", reason="python-OBD (the elm extra) is not installed")
pytestmark = pytest.mark.elm

CODES = {"stored": ["0A80", "0562"], "pending": ["5B00"], "permanent": ["0A80"]}


def test_obd_read_json_over_tcp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with elm_emulator(tmp_path, tcp=True, **CODES) as url:
        assert url.startswith("socket://")     # no --baudrate: the socket default applies
        assert main(["obd", "read", url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["protocol"] == "ISO 15765-4 (CAN 11/500)"
    assert doc["vin"] == "WP0ZZZ99ZTS390000"
    assert {"0C", "0D", "05", "42"} <= set(doc["supported_pids"]["0x7E8"])
    assert 0 <= doc["values"]["Vehicle.Speed"] < 256
    assert doc["values"]["OBD.DTC_COUNT"] == 2
    assert {s: [c["code"] for c in codes] for s, codes in doc["dtcs"].items()} == {
        "stored": ["P0A80", "P0562"], "pending": ["C1B00"], "permanent": ["P0A80"]}
    assert doc["dtcs"]["stored"][1] == {"code": "P0562", "ecu": "0x7E8",
                                        "description": "System voltage low"}
    assert doc["cleared"] is False


def test_pty_read_then_clear_only_when_asked(tmp_path: Path) -> None:
    with elm_emulator(tmp_path, tcp=False, **CODES) as pty, ElmConnection(pty) as link:
        assert pty.startswith("/dev/")
        snap = read_once(link, link.protocol)
        again = read_dtcs(link, ObdTap())
        assert clear_codes(link)
        after = read_dtcs(link, ObdTap())
    assert snap.vin == "WP0ZZZ99ZTS390000" and not snap.cleared
    assert sorted((e.code, e.status) for e in again) == sorted((e.code, e.status)
                                                               for e in snap.dtcs)
    assert len(again) == 4 and after == []


def test_an_unreachable_adapter_is_a_clear_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(DiagLinkError, match="ELM327"):
        ElmConnection("socket://127.0.0.1:9", timeout=0.5)
    assert main(["obd", "read", str(tmp_path / "no-such-tty")]) == 1
    assert "fleetcare obd: error:" in capsys.readouterr().err

"""``fleetcare dbc check`` over real-world DBC files: no crash, every failure explained."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.dbccheck import check_all, check_dbc
from edge.decode import load_dbcs
from edge.errors import DbcError

REPO = Path(__file__).resolve().parents[2]


def test_all_115_opendbc_files_are_checked_and_every_failure_explained() -> None:
    opendbc = pytest.importorskip("opendbc", reason="opendbc==0.3.1 is a dev dependency")
    root = Path(opendbc.__file__).parent
    reports = check_all([root])
    assert len(reports) == 115
    failed = [r for r in reports if not r.loads]
    lenient = [r for r in reports if r.loads and not r.strict]
    assert len(reports) - len(failed) == 94  # what cantools 45.1.0 loads (shared data README)
    assert failed and lenient
    for report in failed + lenient:
        assert report.error.strip(), report.path  # never a failure without a reason
    assert all(r.messages == r.signals == 0 for r in failed)
    assert sum(r.messages for r in reports) > 1000  # the loaded ones are counted
    syntax = [r for r in failed if "Invalid syntax" in r.error]
    assert syntax and all("line" in r.error for r in syntax)


def test_broken_dbc_error_names_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.dbc"
    broken.write_text('VERSION ""\nBO_ 1 X: 8 Y\n SG_ s : 0|8@1+ (1,0) [0|255] "" Y\n'
                      'CM_ 145 "x";\n')
    report = check_dbc(broken)
    assert report.verdict == "fails"
    assert "line 4" in report.error
    with pytest.raises(DbcError, match=r"broken\.dbc does not load: .*line 4"):
        load_dbcs([broken])


def test_lenient_only_file_loads_with_fallback(tmp_path: Path) -> None:
    overlapping = tmp_path / "overlap.dbc"
    overlapping.write_text('VERSION ""\nBO_ 1 X: 8 Y\n SG_ a : 0|8@1+ (1,0) [0|255] "" Y\n'
                           ' SG_ b : 4|8@1+ (1,0) [0|255] "" Y\n')
    report = check_dbc(overlapping)
    assert (report.verdict, report.messages, report.signals) == ("lenient", 1, 2)
    assert "overlapping" in report.error
    with pytest.raises(DbcError, match="overlapping"):
        load_dbcs([overlapping])
    assert len(load_dbcs([overlapping], lenient_fallback=True)[0].messages) == 1


def test_command_exit_status(tmp_path: Path) -> None:
    good = REPO / "dbc" / "fleetcare_ref.dbc"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "dbc", "check", str(good),
                           str(tmp_path / "missing.dbc")],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 1  # one of the two does not load
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ok ") and "fleetcare_ref.dbc: 11 messages" in lines[0]
    assert lines[1].endswith("missing.dbc: 0 messages, 0 signals - file does not exist")
    assert "2 files: 1 load, 1 fail" in done.stderr

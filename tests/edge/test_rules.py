"""Collection rules and fault-code formatting."""

from pathlib import Path

import pytest

from edge.config import REFERENCE_RULES
from edge.errors import ConfigError
from edge.rules import j2012_code, load_rules


@pytest.mark.parametrize(
    ("raw", "code"),
    [(0x0A80, "P0A80"), (0x0562, "P0562"), (0x5B00, "C1B00"), (0x0300, "P0300"),
     (0xC155, "U0155"), (0x8001, "B0001")],
)
def test_j2012_code_is_upper_case_and_letter_from_top_bits(raw: int, code: str) -> None:
    assert j2012_code(raw) == code


def test_reference_rules_map_to_vss_paths() -> None:
    rules = load_rules(REFERENCE_RULES)
    assert rules.vss_version == "4.0"
    table = rules.compile()
    name, scale, offset = table["BMS_Health"]["StateOfHealth"]
    assert name == "Vehicle.Powertrain.TractionBattery.StateOfHealth"
    assert (scale, offset) == (1.0, 0.0)
    assert rules.dtc is not None and rules.dtc.message == "DIAG_DtcReport"


def test_bad_rule_says_which_and_how_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[signal]]\ndbc = "NoDot"\nvss = "Vehicle.Speed"\n')
    with pytest.raises(ConfigError, match=r"signal rule #1 needs dbc"):
        load_rules(path)
    path.write_text("not = [toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_rules(path)

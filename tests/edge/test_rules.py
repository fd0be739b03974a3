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
    name, scale, offset, collector = table["BMS_Health"]["StateOfHealth"]
    assert name == "Vehicle.Powertrain.TractionBattery.StateOfHealth"
    assert (scale, offset, collector) == (1.0, 0.0, None)  # every sample: the demo's counts
    assert rules.dtc is not None and rules.dtc.message == "DIAG_DtcReport"
    assert rules.publish_unmapped and rules.needed_messages() is None


def test_bad_rule_says_which_and_how_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[signal]]\ndbc = "NoDot"\nvss = "Vehicle.Speed"\n')
    with pytest.raises(ConfigError, match=r"signal rule #1 needs dbc"):
        load_rules(path)
    path.write_text("not = [toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_rules(path)


def test_modes_and_derived_filter(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        'vss_version = "4.0"\npublish_unmapped = false\n'
        '[[signal]]\ndbc = "VCU_Motion.VehicleSpeed"\nvss = "Vehicle.Speed"\nmode = "window"\n'
        'window_s = 10\n'
        '[[signal]]\ndbc = "BCM_Ambient.AmbientTemperature"\n'
        'vss = "Vehicle.Exterior.AirTemperature"\nmode = "on_change"\ndeadband_abs = 0.5\n'
        'max_silence_s = 60\n'
        '[cranking]\nvoltage = "BCM_LowVoltage.LvBatteryVoltage"\n'
        'engine_speed = "ECM_Engine.EngineSpeed"\n')
    rules = load_rules(path)
    assert rules.needed_messages() == {"VCU_Motion", "BCM_Ambient", "BCM_LowVoltage",
                                       "ECM_Engine"}
    assert rules.cranking is not None and rules.cranking.running_rpm == 400.0
    first = rules.compile()["VCU_Motion"]["VehicleSpeed"][3]
    second = rules.compile()["VCU_Motion"]["VehicleSpeed"][3]
    assert first is not None and first is not second  # two agents never share a window


@pytest.mark.parametrize(
    ("text", "match"),
    [('mode = "sometimes"', "mode must be one of every, window, on_change"),
     ('mode = "window"\nwindow_s = 0', "window_s must be > 0"),
     ('deadband_abs = "x"', "numbers expected")],
)
def test_bad_mode_settings_name_the_rule(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(f'[[signal]]\ndbc = "A.B"\nvss = "Vehicle.X"\n{text}\n')
    with pytest.raises(ConfigError, match=rf"rules.toml: signal rule #1 \(A.B\).*{match}"):
        load_rules(path)

"""In a checkout, edge's reference data is the repository's ``dbc/`` folder itself.

The editable install maps ``edge.reference_data`` onto ``dbc/``, so what data engineers save
there is what the agent, the simulator and the taps read, with no reinstall and no copy that
could go stale. (tests/packaging/test_wheel.py checks the same files from an installed wheel.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge import reference
from edge.config import REFERENCE_DBC, REFERENCE_RULES, load_edge_settings
from edge.diag.taps import make_taps
from edge.diag.uds_map import load_did_map
from edge.errors import ConfigError

DBC_DIR = Path(__file__).resolve().parents[2] / "dbc"


def test_the_accessor_serves_the_files_in_dbc() -> None:
    assert reference.reference_dir().samefile(DBC_DIR)
    assert reference.reference_dbc().samefile(DBC_DIR / "fleetcare_ref.dbc")
    assert reference.reference_rules().samefile(DBC_DIR / "fleetcare_ref.rules.toml")
    assert [p.name for p in reference.uds_map_paths()] == sorted(
        p.name for p in (DBC_DIR / "uds").glob("*.toml"))
    assert reference.uds_map_path("nissan_leaf").samefile(DBC_DIR / "uds" / "nissan_leaf.toml")


def test_settings_default_to_the_shipped_dbc_and_rules() -> None:
    settings = load_edge_settings(vehicle_id="V1")
    assert settings.dbc == [REFERENCE_DBC] and settings.rules == REFERENCE_RULES
    assert REFERENCE_DBC.samefile(DBC_DIR / "fleetcare_ref.dbc")
    assert REFERENCE_RULES.samefile(DBC_DIR / "fleetcare_ref.rules.toml")


def test_a_bare_uds_map_name_is_a_shipped_map_and_an_unknown_one_says_which_exist() -> None:
    assert load_did_map("fleetcare_ref").request_id == 0x744
    with pytest.raises(ConfigError, match=r"UDS map .*nope\.toml does not exist"):
        load_did_map("nope")
    with pytest.raises(ConfigError, match=r"shipped maps: fleetcare_ref, nissan_leaf"):
        make_taps(["can-fd"])

"""Edge settings: arguments beat environment beat the TOML file beat defaults."""

from pathlib import Path

import pytest

from edge.config import load_edge_settings
from edge.errors import ConfigError


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('vehicle_id = "V1"\nchannel = "from-file"\ninterface = "virtual"\n')
    assert load_edge_settings(config).channel == "from-file"
    monkeypatch.setenv("FLEETCARE_EDGE__CHANNEL", "from-env")
    settings = load_edge_settings(config)
    assert settings.channel == "from-env"
    assert settings.interface == "virtual"  # untouched keys still come from the file
    assert settings.batch_signals == 500  # and absent ones from the defaults
    assert load_edge_settings(config, channel="from-arg").channel == "from-arg"


def test_missing_vehicle_id_says_where_it_looked(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('channel = "can0"\n')
    with pytest.raises(ConfigError, match=r"vehicle_id: Field required.*FLEETCARE_EDGE__"):
        load_edge_settings(config)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('vehicle_id = "V1"\nchanel = "typo"\n')
    with pytest.raises(ConfigError, match="chanel"):
        load_edge_settings(config)


def test_bad_value_names_key_and_where_it_came_from(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('vehicle_id = "V1"\nbatch_signals = 0\n')
    with pytest.raises(ConfigError, match=rf"batch_signals: .*greater than 0 \(from {config}\)"):
        load_edge_settings(config)
    monkeypatch.setenv("FLEETCARE_EDGE__HEALTH_INTERVAL_S", "soon")
    with pytest.raises(ConfigError,
                       match=r"health_interval_s: .*\(from environment variable "
                             r"FLEETCARE_EDGE__HEALTH_INTERVAL_S\)"):
        load_edge_settings(config, batch_signals=10)
    monkeypatch.delenv("FLEETCARE_EDGE__HEALTH_INTERVAL_S")
    with pytest.raises(ConfigError, match=r"replay_speed: .*\(from command-line argument\)"):
        load_edge_settings(config, batch_signals=10, replay_speed=-1)


def test_config_file_that_is_not_toml(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text("vehicle_id = \n")
    with pytest.raises(ConfigError, match=r"edge\.toml is not valid TOML"):
        load_edge_settings(config)


def test_taps_and_tls_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETCARE_EDGE__TAPS", '["obd", "j1939"]')
    monkeypatch.setenv("FLEETCARE_EDGE__TLS_CA", str(tmp_path / "ca.pem"))
    settings = load_edge_settings(vehicle_id="V1")
    assert settings.taps == ["obd", "j1939"]
    assert settings.tls_ca == tmp_path / "ca.pem"

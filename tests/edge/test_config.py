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

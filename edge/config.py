"""The edge agent's configuration: one frozen settings object, validated at start-up.

Precedence, highest first: explicit arguments, environment (``FLEETCARE_EDGE__<FIELD>``), the
TOML file given with ``--config``, then the defaults below. A validation error names each bad
key and says where it was looked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DBC = REPO_ROOT / "dbc" / "fleetcare_ref.dbc"
REFERENCE_RULES = REPO_ROOT / "dbc" / "fleetcare_ref.rules.toml"


class EdgeSettings(BaseSettings):
    """Everything one agent on one gateway needs."""

    model_config = SettingsConfigDict(env_prefix="FLEETCARE_EDGE__", frozen=True,
                                      extra="forbid")

    vehicle_id: str = Field(description="The vehicle this gateway speaks for.")
    interface: str = Field("socketcan", description="python-can interface name.")
    channel: str = Field("can0", description="python-can channel (e.g. can0, vcan0).")
    bitrate: int | None = Field(None, description="Bus bitrate, when the driver sets it.")
    dbc: list[Path] = Field(default_factory=lambda: [REFERENCE_DBC],
                            description="DBC files to decode with.")
    rules: Path = Field(REFERENCE_RULES, description="Collection rules (TOML).")
    broker_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker.")
    spool_dir: Path = Field(Path("/var/lib/fleetcare/spool"),
                            description="Where messages wait for the broker's ack.")
    spool_max_bytes: int = Field(256 * 2**20, description="Spool bound; oldest dropped beyond.")
    batch_signals: int = Field(500, gt=0, description="Samples per telemetry message.")
    batch_interval_s: float = Field(1.0, gt=0, description="Longest a sample waits to be sent.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment, then the TOML file, then defaults."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def load_edge_settings(config: str | Path | None = None, **overrides: Any) -> EdgeSettings:
    """Build the settings from a TOML file (optional), the environment and overrides.

    Raises:
        ConfigError: a key is missing or invalid; the message lists each one.
    """
    if config is not None and not Path(config).is_file():
        raise ConfigError(f"config file {config} does not exist")
    with_file = SettingsConfigDict(**{**EdgeSettings.model_config, "toml_file": config})
    source_cls = type("EdgeSettingsFromFile", (EdgeSettings,), {"model_config": with_file})
    try:
        settings: EdgeSettings = source_cls(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        where = f"arguments, FLEETCARE_EDGE__* environment variables or {config or 'no file'}"
        raise ConfigError(f"invalid edge configuration ({problems}); looked in {where}") from exc
    return settings

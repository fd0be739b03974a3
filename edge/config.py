"""The edge agent's configuration: one frozen settings object, validated at start-up.

Precedence, highest first: explicit arguments, environment (``FLEETCARE_EDGE__<FIELD>``), the
TOML file given with ``--config``, then the defaults below. A validation error names each bad
key and says where it was looked for.

Secrets (the MQTT password, the password of an encrypted client key) are ``SecretStr``: they
print as ``**********`` and are revealed only in the call that hands them to paho. Each can
instead come from a file named by ``<field>_file`` (``FLEETCARE_EDGE__MQTT_PASSWORD_FILE``, or
``mqtt_password_file`` in the TOML file), which keeps it out of the environment and out of
the config file a fleet shares; giving both the value and the file is an error.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import AwareDatetime, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from edge import reference
from edge.errors import ConfigError
from edge.wire.secrets import read_secret_files

REFERENCE_DBC: Final = reference.reference_dbc()
"""The shipped reference DBC, the default of ``dbc`` (see :mod:`edge.reference`)."""
REFERENCE_RULES: Final = reference.reference_rules()
"""The shipped collection rules, the default of ``rules`` and of every ``--rules``."""
SECRET_FIELDS: Final = ("mqtt_password", "tls_key_password")
"""Fields that may be read from a file named by ``<field>_file``."""


class EdgeSettings(BaseSettings):
    """Everything one agent on one gateway needs."""

    model_config = SettingsConfigDict(env_prefix="FLEETCARE_EDGE__", frozen=True,
                                      extra="forbid", hide_input_in_errors=True)

    vehicle_id: str = Field(description="The vehicle this gateway speaks for.")
    interface: str = Field("socketcan", description="python-can interface name, or 'replay'.")
    channel: str = Field("can0", description="python-can channel (e.g. can0, vcan0); for "
                                             "'replay', comma-separated log files.")
    bitrate: int | None = Field(None, description="Bus bitrate, when the driver sets it.")
    fd: bool = Field(False, description="Open the bus in CAN FD mode.")
    replay_speed: float = Field(0.0, ge=0, description="Replay pace: 0 as fast as possible, "
                                                       "1 recorded, N times recorded.")
    strict_logs: bool = Field(False, description="Fail on a malformed log line (else count).")
    replay_start: AwareDatetime | None = Field(
        None, description="Replay only: re-stamp the recording so its first frame is at this "
                          "time (intervals kept); unset keeps the recorded times.")
    taps: list[str] = Field(default_factory=list,
                            description="Frame taps beside the DBC path: obd, j1939, uds.")
    poll_pids: list[Annotated[int, Field(ge=1, le=0xFF)]] = Field(
        default_factory=list,
        description="OBD-II mode 01 PIDs the agent asks for over ISO-TP on its CAN channel "
                    "(the obd tap hears the answers); empty: the agent only listens.")
    poll_every_s: float = Field(1.0, gt=0, description="Seconds between two requests for "
                                                       "poll_pids.")
    poll_dtc_every_s: float = Field(60.0, gt=0, description="Seconds between two requests for "
                                                            "the fault codes (modes 03, 07, "
                                                            "0A) while polling.")
    dbc: list[Path] = Field(default_factory=lambda: [REFERENCE_DBC],
                            description="DBC files to decode with.")
    rules: Path = Field(REFERENCE_RULES, description="Collection rules (TOML).")
    profile: str | None = Field(None, description="Signal profile (a name on profile_dirs or "
                                                  "a .toml path): sets dbc, rules and taps.")
    vehicle_model: str | None = Field(None, description="The vehicle's model as the register "
                                                        "names it; picks the profile that "
                                                        "lists it (unless profile is set).")
    profile_dirs: list[Path] = Field(default_factory=list,
                                     description="Folders searched for profiles before the "
                                                 "shipped ones.")
    dbc_dirs: list[Path] = Field(default_factory=list,
                                 description="Folders searched for a profile's DBC files "
                                             "before the shipped ones.")
    broker_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker.")
    spool_dir: Path = Field(Path("/var/lib/fleetcare/spool"),
                            description="Where messages wait for the broker's ack.")
    spool_max_bytes: int = Field(256 * 2**20, gt=0,
                                 description="Spool bound; telemetry evicted first beyond it.")
    spool_fsync: bool = Field(True, description="Every spool write durable (synchronous=FULL).")
    batch_signals: int = Field(500, gt=0, description="Samples per telemetry message.")
    batch_interval_s: float = Field(1.0, gt=0, description="Longest a sample waits to be sent.")
    health_interval_s: float = Field(60.0, gt=0, description="Seconds between health reports.")
    reconnect_min_s: int = Field(1, ge=1, description="First reconnect delay (doubles).")
    reconnect_max_s: int = Field(60, ge=1, description="Longest reconnect delay.")
    receipts: bool = Field(True, description="Delete a spooled message when the backend's "
                                             "receipt says its store committed it; False: on "
                                             "the broker's PUBACK (a backend without receipts).")
    receipt_timeout_s: float = Field(30.0, gt=0, description="Send a message again when no "
                                                             "receipt came this long after "
                                                             "the broker's PUBACK.")
    receipt_timeout_max_s: float = Field(480.0, gt=0, description="Longest wait for a receipt: "
                                                                  "each re-send doubles the "
                                                                  "wait up to this.")
    tls_ca: Path | None = Field(None, description="CA file that signed the broker (PEM).")
    tls_cert: Path | None = Field(None, description="Client certificate (PEM).")
    tls_key: Path | None = Field(None, description="Client private key (PEM).")
    tls_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted tls_key; None: the key is not encrypted.")
    tls_key_password_file: Path | None = Field(None, description="File holding tls_key_password.")
    mqtt_username: str | None = Field(None, description="MQTT login (broker password_file).")
    mqtt_password: SecretStr | None = Field(None, description="Password of mqtt_username.")
    mqtt_password_file: Path | None = Field(None, description="File holding mqtt_password.")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        return read_secret_files(data, SECRET_FIELDS) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _receipt_waits_grow(self) -> EdgeSettings:
        if self.receipt_timeout_max_s < self.receipt_timeout_s:
            raise ValueError(f"receipt_timeout_max_s ({self.receipt_timeout_max_s:g}) is "
                             f"shorter than receipt_timeout_s ({self.receipt_timeout_s:g})")
        return self

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
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {config} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{key}: {err['msg']} (from {_origin(key, config, overrides)})"
            if (key := _key(err["loc"])) else err["msg"]
            for err in exc.errors()
        )
        where = f"arguments, FLEETCARE_EDGE__* environment variables or {config or 'no file'}"
        # from None: pydantic's own text may quote the values it got, secrets included
        raise ConfigError(f"invalid edge configuration ({problems}); looked in {where}") from None
    return settings


def _key(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _origin(key: str, config: str | Path | None, overrides: dict[str, Any]) -> str:
    """Where the winning value of ``key`` came from, in the precedence order."""
    field = key.split(".")[0]
    if field in overrides:
        return "command-line argument"
    env = f"FLEETCARE_EDGE__{field.upper()}"
    if any(name.upper() == env for name in os.environ):
        return f"environment variable {env}"
    if config is not None:
        try:
            if field in tomllib.loads(Path(config).read_text(encoding="utf-8")):
                return f"{config}"
        except (OSError, tomllib.TOMLDecodeError):
            return f"{config} (not valid TOML)"
    return "not set anywhere" if field not in EdgeSettings.model_fields or \
        EdgeSettings.model_fields[field].is_required() else "default"

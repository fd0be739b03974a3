"""The backend's configuration: one frozen settings object, validated at start-up.

Precedence, highest first: explicit arguments, environment (``FLEETCARE_PIPELINE__<FIELD>``),
then the defaults below. Secrets are ``SecretStr``: they print as ``**********`` and are
revealed only where they are used (signing a webhook, logging in to the broker, opening the
CA key). Each secret can instead come from a file named by ``<FIELD>_FILE`` (for example
``FLEETCARE_PIPELINE__MQTT_PASSWORD_FILE=/run/secrets/mqtt``, or systemd's
``$CREDENTIALS_DIRECTORY``), so it need not sit in the environment of every child process;
giving both the value and the file is an error rather than a silent choice.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge.wire.secrets import read_secret_files
from pipeline.errors import TerminalPipelineError

SECRET_FIELDS: Final = ("crm_secret", "mqtt_password", "ca_key_password",
                         "mqtt_tls_key_password")
"""Fields that may be read from a file named by ``<field>_file``."""

SECRET_PREFIX: Final = "whsec_"
"""Standard Webhooks secrets are written ``whsec_<base64 key>``."""


class SecretError(TerminalPipelineError, ValueError):
    """A webhook signing secret is not ``whsec_`` followed by base64.

    Also a ``ValueError``, so pydantic reports it as a bad value of the field it checks.
    """


def check_webhook_secret(secret: str) -> bytes:
    """The raw key of one ``whsec_`` secret (:mod:`pipeline.crm.signing` signs with it).

    The prefix is required, not merely tolerated: a key pasted without it, or a value that
    is not base64 (a password, a hex string), would sign with bytes the CRM does not hold,
    and every delivery would be refused as forged, one lead at a time, long after start-up.

    Raises:
        SecretError: not ``whsec_`` followed by non-empty base64 (the message never quotes
            the secret).
    """
    if not secret.startswith(SECRET_PREFIX):
        raise SecretError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    try:
        raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise SecretError(
            f"a webhook secret must be {SECRET_PREFIX!r} followed by base64") from None
    if not raw:
        raise SecretError(f"a webhook secret needs a base64 key after {SECRET_PREFIX!r}")
    return raw


def check_webhook_secrets(keys: Sequence[str]) -> None:
    """Check every key of a rotation list with :func:`check_webhook_secret`.

    Raises:
        SecretError: a key is malformed; the message names it by position, never by value.
    """
    for position, key in enumerate(keys, 1):
        try:
            check_webhook_secret(key)
        except SecretError as exc:
            where = f"key {position} of {len(keys)}: " if len(keys) > 1 else ""
            raise SecretError(f"{where}{exc}") from None


MqttClientKind = Literal["fast", "stock"]
"""Which paho client ingest runs on: ``fast`` is :class:`pipeline.ingest.client.IngestClient`
(it overrides paho internals for speed), ``stock`` is paho's own ``Client`` with manual acks,
the fallback when a paho upgrade breaks those internals."""


DuckDBConfig: TypeAlias = dict[str, str | bool | int | float | list[str]]
"""The ``config`` argument of ``duckdb.connect``."""

MEMORY_SIZE: Final = r"(?i)^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$"
"""A memory size as DuckDB's ``memory_limit`` takes it: a number and a unit (``1GB``,
``512MiB``)."""


class StoreResources(BaseSettings):
    """How much of the machine a process's DuckDB store may take.

    DuckDB's own defaults are 80 % of the machine's memory and a thread per core: right for a
    machine that only runs queries, wrong for one that also holds the feature build's polars
    frames, a scheduler and the broker. Every store connection of a backend process opens with
    these (:func:`pipeline.store.connection.resource_config`: the landing store, read-only
    readers, the serving store, partition stores), so a deployment bounds the
    feature build and scoring of a large fleet without touching code. A separate model from
    :class:`PipelineSettings` (which has these fields too) so that opening a store reads and
    validates only these two values.
    """

    model_config = SettingsConfigDict(env_prefix="FLEETCARE_PIPELINE__", frozen=True,
                                      extra="ignore", hide_input_in_errors=True)

    db_memory_limit: str | None = Field(
        None, pattern=MEMORY_SIZE,
        description="DuckDB's memory limit for each backend process's store (1GB, 512MiB); "
                    "past it DuckDB spills to disk. Unset: DuckDB's default, 80 % of RAM.")
    db_threads: int | None = Field(
        None, gt=0, description="DuckDB's worker threads per process; unset: one per core.")

    def duckdb_config(self) -> DuckDBConfig:
        """The ``config`` of ``duckdb.connect``: only what is set, so an unset field keeps
        DuckDB's default."""
        config: DuckDBConfig = {}
        if self.db_memory_limit is not None:
            config["memory_limit"] = self.db_memory_limit.replace(" ", "")
        if self.db_threads is not None:
            config["threads"] = self.db_threads
        return config


def load_store_resources() -> StoreResources:
    """:class:`StoreResources` from the environment.

    Raises:
        TerminalPipelineError: a value is invalid; the message names the variable and what a
            valid value looks like.
    """
    try:
        overrides: dict[str, Any] = {}  # the environment only
        return StoreResources(**overrides)
    except ValidationError as exc:
        fields = ", ".join(f"FLEETCARE_PIPELINE__{str(err['loc'][0]).upper()}"
                           for err in exc.errors() if err["loc"])
        raise TerminalPipelineError(
            f"invalid store resources in {fields or 'the environment'}: the memory limit is a "
            "number and a unit (1GB, 512MiB), the threads a positive whole number") from None


class PipelineSettings(StoreResources):
    """Where the store, the broker and the CRM are, and the secrets to talk to them."""

    model_config = SettingsConfigDict(env_prefix="FLEETCARE_PIPELINE__", frozen=True,
                                      extra="forbid", hide_input_in_errors=True)

    db_path: Path = Field(Path("fleet.duckdb"), description="The DuckDB store.")
    broker_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker.")
    mqtt_username: str | None = Field(None, description="MQTT login (broker password_file).")
    mqtt_password: SecretStr | None = Field(None, description="Password of mqtt_username.")
    mqtt_password_file: Path | None = Field(None, description="File holding mqtt_password.")
    mqtt_tls_ca: Path | None = Field(None, description="CA that signed the broker (mqtts://).")
    mqtt_tls_cert: Path | None = Field(
        None, description="The backend's client certificate (fleetcare pki issue ... "
                          "fleetcare-ingest) for a broker with require_certificate.")
    mqtt_tls_key: Path | None = Field(None, description="Private key of mqtt_tls_cert.")
    mqtt_tls_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted mqtt_tls_key.")
    mqtt_tls_key_password_file: Path | None = Field(
        None, description="File holding mqtt_tls_key_password.")
    mqtt_client: MqttClientKind = Field(
        "fast", description="Ingest's paho client: fast (tuned, overrides paho internals) "
                            "or stock (paho's own Client, manual acks).")
    crm_url: str = Field("http://127.0.0.1:8787/leads", description="CRM webhook endpoint.")
    crm_secret: SecretStr = Field(
        SecretStr(""), description="Standard Webhooks signing secret (whsec_...); several "
                                   "separated by spaces during a rotation, newest last.")
    crm_secret_file: Path | None = Field(None, description="File holding crm_secret.")
    ca_key_password: SecretStr | None = Field(
        None, description="Password of the CA's private key (fleetcare pki); None: unencrypted.")
    ca_key_password_file: Path | None = Field(None, description="File holding ca_key_password.")
    http_max_body_bytes: int = Field(
        1_000_000, gt=0, description="Largest request body the CRM and inbound endpoints read.")
    http_request_timeout_s: float = Field(
        10.0, gt=0, description="Time a client has to send a whole request (head and body) to "
                                "the CRM and inbound endpoints; later: 408.")
    http_max_connections: int = Field(
        64, gt=0, description="Connections the CRM and inbound endpoints serve at once; a "
                              "request on one more is answered 503.")
    horizon_days: int | None = Field(
        None, gt=0, description="Warn about failures this many days ahead, for every "
                                "component; unset: each component's own horizon (60 days for "
                                "the traction battery and brakes, 30 for the 12 V battery).")
    seed: int = Field(0, description="Seed for splits and models (reproducible runs).")
    console_base_url: str = Field(
        "http://127.0.0.1:8765", pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="Where the console serves /leads/<lead_id>: each lead's evidence_url is "
                    "this base followed by /leads/<lead_id>.")
    evidence_max_age_days: int = Field(
        14, gt=0, description="A lead whose newest evidence (feature day, fault code) is "
                              "older than this many days is held (stale_evidence), not sent.")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        return read_secret_files(data, SECRET_FIELDS) if isinstance(data, dict) else data

    @field_validator("crm_secret")
    @classmethod
    def _crm_secret_is_whsec(cls, value: SecretStr) -> SecretStr:
        """Refuse a malformed key at start, not at the first delivery; empty means unset.

        Every key of a rotation list (spaces or commas between them) is checked; the error
        names a key by its position only.
        """
        check_webhook_secrets(value.get_secret_value().replace(",", " ").split())
        return value


def load_pipeline_settings(**overrides: Any) -> PipelineSettings:
    """Settings from the environment and overrides.

    Raises:
        TerminalPipelineError: a value is invalid; the message lists each one.
    """
    try:
        return PipelineSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(settings)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise TerminalPipelineError(
            f"invalid pipeline configuration ({problems}); set it with arguments or "
            "FLEETCARE_PIPELINE__* environment variables"
        ) from None  # pydantic's own text may quote the values it got: secrets included

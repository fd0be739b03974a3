"""The backend's configuration: one frozen settings object, validated at start-up.

Precedence, highest first: explicit arguments, environment (``FLEETCARE_PIPELINE__<FIELD>``),
then the defaults below. Secrets are ``SecretStr``: they print as ``**********`` and are
revealed only where they are used (signing a webhook).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import TerminalPipelineError


class PipelineSettings(BaseSettings):
    """Where the store, the broker and the CRM are, and how to sign for the CRM."""

    model_config = SettingsConfigDict(env_prefix="FLEETCARE_PIPELINE__", frozen=True,
                                      extra="forbid")

    db_path: Path = Field(Path("fleet.duckdb"), description="The DuckDB store.")
    broker_url: str = Field("mqtt://127.0.0.1:1883", description="MQTT broker.")
    crm_url: str = Field("http://127.0.0.1:8787/leads", description="CRM webhook endpoint.")
    crm_secret: SecretStr = Field(
        SecretStr(""), description="Standard Webhooks signing secret (whsec_...).")
    horizon_days: int = Field(30, gt=0, description="Warn about failures this far ahead.")
    seed: int = Field(0, description="Seed for splits and models (reproducible runs).")


def load_pipeline_settings(**overrides: Any) -> PipelineSettings:
    """Settings from the environment and overrides.

    Raises:
        TerminalPipelineError: a value is invalid; the message lists each one.
    """
    try:
        return PipelineSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise TerminalPipelineError(
            f"invalid pipeline configuration ({problems}); set it with arguments or "
            "FLEETCARE_PIPELINE__* environment variables"
        ) from exc

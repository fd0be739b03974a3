"""Where the scheduled flows find their stores: one frozen settings object for ``flows``.

Precedence, highest first: command-line arguments, environment (``FLEETCARE_FLOWS__<FIELD>``),
then the defaults below. The CRM URL and secret stay in the pipeline's settings
(``FLEETCARE_PIPELINE__CRM_URL``, ``FLEETCARE_PIPELINE__CRM_SECRET``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class FlowSettings(BaseSettings):
    """Paths of the serving store, the landing snapshot and exports, and the scale-out knobs."""

    model_config = SettingsConfigDict(env_prefix="FLEETCARE_FLOWS__", frozen=True,
                                      extra="forbid")

    serving_path: Path = Field(Path("serving.duckdb"), description="The flows' own store.")
    snapshot_path: Path | list[Path] = Field(
        Path("snapshot.duckdb"),
        description="The landing snapshot ingest publishes, or a list of them, one per ingest "
                    "worker on a shared subscription (environment: a JSON list).")
    export_dir: Path | None = Field(None, description="Parquet exports of cold telemetry.")
    landing_path: Path = Field(Path("fleet.duckdb"),
                               description="The landing store (export_cold, ingest stopped).")
    inbox_path: Path | None = Field(None, description="The CRM status-update inbox (JSONL).")
    buckets: int = Field(1, ge=1, description="Vehicle hash buckets for features and scores.")
    dask_address: str | None = Field(None, description="Existing Dask scheduler (tcp://...).")

    @property
    def snapshot_param(self) -> str | list[str]:
        """``snapshot_path`` as the flows take it: one path, or a list of them."""
        if isinstance(self.snapshot_path, list):
            return [str(p) for p in self.snapshot_path]
        return str(self.snapshot_path)


def load_flow_settings(**overrides: Any) -> FlowSettings:
    """Settings from the environment and overrides (None overrides are ignored).

    Raises:
        ValueError: a value is invalid; the message lists each one and how to set it.
    """
    try:
        return FlowSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise ValueError(f"invalid flows configuration ({problems}); set it with arguments or "
                         "FLEETCARE_FLOWS__* environment variables") from exc

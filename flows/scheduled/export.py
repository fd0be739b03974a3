"""``export_cold`` (nightly): cold telemetry to Parquet and a fresh snapshot, ingest stopped.

Only the process that holds the landing store can export it. While ``fleetcare ingest`` runs,
it does this itself between batches (``--export-dir DIR --cold-after-days N --snapshot PATH
--maintenance-interval S``, :class:`pipeline.store.export.ExportPolicy` as its maintenance
hook), and this flow would only find the file locked; it fails then, saying so. With ingest stopped
(a maintenance window, the demo, a single-machine set-up that takes turns), this flow does the
same work on a schedule.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.scheduled.common import STORE_TAG
from pipeline.errors import StoreError
from pipeline.store import connection as store
from pipeline.store import export


@task(tags=[STORE_TAG])
def export_landing(landing_path: str, export_dir: str, older_than_days: float,
                   snapshot_path: str | None) -> dict[str, Any]:
    """Move cold telemetry to Parquet, then write the snapshot (ingest's own maintenance)."""
    try:
        con = store.connect(landing_path)
    except StoreError as exc:
        raise StoreError(
            f"{exc}. If `fleetcare ingest` is running it holds the landing store and exports "
            "it itself: give it --export-dir and --snapshot instead of scheduling export_cold"
        ) from exc
    try:
        report = export.export_cold(con, Path(export_dir), older_than_days)
        snapshot = export.write_snapshot(con, snapshot_path) if snapshot_path else None
    finally:
        con.close()
    return {**dataclasses.asdict(report), "snapshot": str(snapshot) if snapshot else None}


@flow(name="export_cold")
def export_cold_flow(landing_path: str, export_dir: str, older_than_days: float = 7.0,
                     snapshot_path: str | None = None) -> dict[str, Any]:
    """Export the landing store's cold telemetry (see the module docstring)."""
    result: dict[str, Any] = export_landing(landing_path, export_dir, older_than_days,
                                            snapshot_path)
    return result

"""``train`` (weekly): one model per component, judged on held-out vehicles and promoted only
when it beats the promoted one (:mod:`pipeline.ml.training`).

Training needs only what the store holds; it writes no customers, centres or capacity. Those
come from the dealer system's export through ``fleetcare fleet import``, never from a
scheduled flow (the demo and the tests import the simulator's files the same way).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, task

from flows.scheduled.common import RETRIES, STORE_TAG, SnapshotParam, serving_store
from pipeline.ml import training


@task(tags=[STORE_TAG], **RETRIES)
def train_models(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
                 horizon_days: int | None, seed: int) -> list[dict[str, Any]]:
    """Fit, evaluate, register and maybe promote one model per component (``horizon_days``
    None: each component's own horizon, :data:`pipeline.features.labels.HORIZON_DAYS`)."""
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        reports = training.train_and_register(con, horizon_days=horizon_days, seed=seed)
    return [dataclasses.asdict(r) for r in reports]


@flow(name="train")
def train_flow(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None = None,
               horizon_days: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Train on everything landed so far (see the module docstring)."""
    result: list[dict[str, Any]] = train_models(serving_path, snapshot_path, export_dir,
                                                horizon_days, seed)
    return result

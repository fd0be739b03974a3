"""What every scheduled flow shares: the writer tag, the retry rule, the serving store.

Tasks are thin shells: each opens the serving store (:func:`serving_store`), calls one plain
function of ``pipeline`` and returns its record. Every task that opens the serving store
writes it (opening syncs the fleet register from the snapshot), so each carries
:data:`STORE_TAG`; a concurrency limit of 1 on that tag (``fleetcare flows serve`` creates it)
makes tasks of concurrent flow runs take turns on the file instead of colliding on DuckDB's
write lock. Should they collide anyway, the lock error is transient and retried.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeAlias

import duckdb
from prefect.client.schemas.objects import TaskRun
from prefect.states import State
from prefect.tasks import Task

from pipeline.errors import TransientPipelineError
from pipeline.store.serving import connect_serving

SnapshotParam: TypeAlias = str | list[str]
"""A flow's ``snapshot_path``: the landing snapshot, or one per ingest worker (a list)."""
STORE_TAG: Final = "duckdb-writer"
"""Tag of every task that writes a DuckDB file; give it a concurrency limit of 1."""
RETRY_DELAYS_S: Final = [2, 10, 30]
"""Backoff between attempts of a task whose error is transient (with 50 % jitter)."""


def transient_only(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a failed task only when its error says a later attempt may succeed."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, TransientPipelineError)


RETRIES: Final[dict[str, Any]] = {
    "retries": len(RETRY_DELAYS_S), "retry_delay_seconds": RETRY_DELAYS_S,
    "retry_jitter_factor": 0.5, "retry_condition_fn": transient_only,
}
"""Task options: retried with backoff on transient errors, never on terminal ones."""


@contextmanager
def serving_store(serving_path: str, snapshot_path: SnapshotParam,
                  export_dir: str | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The serving store with the landing snapshot(s) behind its views, closed afterwards."""
    con = connect_serving(serving_path, snapshot_path, export_dir)
    try:
        yield con
    finally:
        con.close()

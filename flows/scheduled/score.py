"""``score_and_advise`` (hourly): score the fleet with the promoted models, then turn scores
and active fault codes into deduplicated leads with their outbox rows.

Scores of a day replace that day's rows and advice re-issues a lead only when it escalates,
so running it twice creates no duplicate score, lead or outbox row. With ``buckets`` > 1 the
scoring runs per vehicle bucket on the flow's task runner (:mod:`flows.scheduled.partitioned`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from prefect import flow, task

from flows.scheduled.common import RETRIES, STORE_TAG, SnapshotParam, serving_store
from flows.scheduled.partitioned import scores_by_partition
from pipeline.leads import advice
from pipeline.ml import scoring


@task(tags=[STORE_TAG], **RETRIES)
def score(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
          as_of: dt.date | None) -> dict[str, Any]:
    """Score every vehicle's latest day (default: the newest telemetry day); the scoring
    report says, per component, how many vehicles were scored and which were skipped."""
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        return dataclasses.asdict(scoring.score_fleet(con, as_of=as_of))


@task(tags=[STORE_TAG], **RETRIES)
def advise(serving_path: str, snapshot_path: SnapshotParam, export_dir: str | None,
           now: dt.datetime | None) -> dict[str, Any]:
    """Create or escalate leads (and their outbox rows) from scores and fault codes."""
    with serving_store(serving_path, snapshot_path, export_dir) as con:
        return dataclasses.asdict(advice.advise(con, now=now))


@flow(name="score_and_advise")
def score_and_advise_flow(serving_path: str, snapshot_path: SnapshotParam,
                          export_dir: str | None = None, buckets: int = 1,
                          as_of: dt.date | None = None,
                          now: dt.datetime | None = None) -> dict[str, Any]:
    """Score, then advise (see the module docstring). ``as_of``/``now`` default to the newest
    data and the current time; simulated or replayed fleets pass their own. ``scored`` is the
    number of score rows written, ``scoring`` the report of who was scored and skipped."""
    report = (scores_by_partition(serving_path, snapshot_path, export_dir, buckets, as_of)
              if buckets > 1 else score(serving_path, snapshot_path, export_dir, as_of))
    leads = advise(serving_path, snapshot_path, export_dir, now)
    return {"scored": report["rows"], "scoring": report, "advice": leads}

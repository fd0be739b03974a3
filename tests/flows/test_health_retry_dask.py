"""Health alarms, transient retries, terminal failures and Dask partitions, under the harness."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import polars as pl
import pytest
from flow_fixtures import Stores, last_day, seed_dealer_data
from polars.testing import assert_frame_equal
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    TaskRunFilter,
    TaskRunFilterName,
    TaskRunFilterState,
    TaskRunFilterStateName,
)
from prefect.events.filters import EventFilter, EventNameFilter
from test_serving import hold_lock, release

from flows.scheduled.features import features_flow
from flows.scheduled.health import UNHEALTHY_EVENT, health_flow
from flows.scheduled.partitioned import on_dask
from flows.scheduled.score import score_and_advise_flow
from flows.scheduled.train import train_flow
from pipeline.ops.health import Thresholds
from pipeline.store import connection as store
from pipeline.store import export
from pipeline.store.serving import connect_serving
from tests.polling import wait_until


def paths(stores: Stores) -> dict[str, Any]:
    return {"serving_path": stores.serving, "snapshot_path": stores.snapshot}



def test_health_fails_naming_each_problem_and_emits_events(
        stores: Stores, prefect_harness: None) -> None:
    now = dt.datetime.now(dt.UTC)
    with store.connect(stores.landing) as con:
        con.execute("INSERT INTO edge_health VALUES ('ok1', ?, true, '{}', 'h1')",
                    [now - dt.timedelta(hours=2)])
        con.execute("INSERT INTO ingested_messages VALUES ('m1', 'ok1', 'telemetry', 't', 1, ?)",
                    [now - dt.timedelta(seconds=30)])
        export.write_snapshot(con, stores.snapshot)
    assert health_flow(**paths(stores), thresholds=Thresholds(heartbeat_max_age_s=3 * 3600))
    state = health_flow(**paths(stores), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"ok1 \(7\d{3} s\)") as raised:
        state.result()
    assert "longer than 900 s" in str(raised.value) and "ingest" not in str(raised.value)

    def emitted() -> bool:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                EventFilter(event=EventNameFilter(name=[UNHEALTHY_EVENT])), limit=50)
        return any(e.resource.id == "fleetcare.health.heartbeat_age" for e in page.events)

    assert wait_until(emitted)


def test_dead_letter_growth_since_the_last_check_is_unhealthy(
        stores: Stores, prefect_harness: None) -> None:
    assert health_flow(**paths(stores))  # baseline
    with store.connect(stores.landing) as con:
        con.execute("INSERT INTO dead_letters (topic, reason, payload) VALUES ('t', 'bad', 'x')")
        export.write_snapshot(con, stores.snapshot)
    state = health_flow(**paths(stores), return_state=True)
    with pytest.raises(Exception, match="1 new dead letters since the last check, more than 0"):
        state.result()
    with connect_serving(stores.serving, stores.snapshot) as con:
        rows = con.execute("SELECT detail FROM health_checks WHERE check_name = 'dead_letters'"
                           " ORDER BY checked_at").fetchall()
    assert [json.loads(r[0])["total"] for r in rows] == [0, 1]


def test_a_locked_serving_store_is_retried_and_the_run_succeeds(
        stores: Stores, prefect_harness: None) -> None:
    holder = hold_lock(stores.serving)
    results: list[Any] = []
    runner = threading.Thread(target=lambda: results.append(
        features_flow(**paths(stores), days=3, return_state=True)))
    runner.start()

    def retrying() -> bool:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(like_="pick_days"),
                state=TaskRunFilterState(name=TaskRunFilterStateName(
                    any_=["AwaitingRetry", "Retrying"]))))
        return bool(runs)

    try:
        assert wait_until(retrying)
    finally:
        release(holder)
    runner.join(timeout=120)
    assert results and results[0].is_completed()
    assert results[0].result()["end"] == last_day().isoformat()


def test_a_terminal_error_fails_at_once_with_its_message(
        stores: Stores, prefect_harness: None) -> None:
    state = features_flow(stores.serving, stores.snapshot + ".missing", return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="no landing snapshot"):
        state.result()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=[flow_run_id])))
    assert [(r.name.split("-")[0], r.run_count) for r in runs] == [("pick_days", 1)]


def test_dask_partitions_equal_the_single_writer_run(
        stores: Stores, prefect_harness: None) -> None:
    seed_dealer_data(stores)
    train_flow(**paths(stores))
    score_and_advise_flow(**paths(stores))
    features_flow(**paths(stores), days=10)
    with connect_serving(stores.serving, stores.snapshot) as con:
        features = con.sql("SELECT * FROM daily_features ORDER BY ALL").pl()
        scores = con.sql("SELECT vehicle_id, component, as_of, probability, model_id FROM scores"
                         " ORDER BY ALL").pl()
        con.execute("DELETE FROM daily_features; DELETE FROM scores")
    assert on_dask(features_flow)(**paths(stores), days=10, buckets=3)["rows"] == features.height
    assert on_dask(score_and_advise_flow)(**paths(stores), buckets=3)["scored"] == scores.height
    with connect_serving(stores.serving, stores.snapshot) as con:
        assert_frame_equal(con.sql("SELECT * FROM daily_features ORDER BY ALL").pl(), features)
        again = con.sql("SELECT vehicle_id, component, as_of, probability, model_id FROM scores"
                        " ORDER BY ALL").pl()
    assert_frame_equal(again, scores, check_exact=False, rel_tol=1e-9)
    assert isinstance(features, pl.DataFrame) and features.height > 0

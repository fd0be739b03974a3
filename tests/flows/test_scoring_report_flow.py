"""``score_and_advise`` passes scoring's report through, with one writer and per bucket alike.

The landing store is the fleet of ``tests/pipeline/coverage_fleet.py``: promoted models, and
vehicles that lack signals one model or another requires.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))

from coverage_fleet import LAST, REAR_PADS, build_coverage_store

from flows.scheduled.partitioned import on_dask
from flows.scheduled.score import score_and_advise_flow
from pipeline.features.inputs import LV_VOLTAGE
from pipeline.store.serving import connect_serving


def _skipped(result: dict[str, Any]) -> dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]]:
    return {c["component"]: [(tuple(s["missing_signals"]), tuple(s["vehicle_ids"]))
                             for s in c["skipped"]] for c in result["scoring"]["components"]}


def test_the_flow_reports_skipped_vehicles_one_writer_and_partitioned(
        tmp_path: Path, prefect_harness: None) -> None:
    landing = build_coverage_store(tmp_path / "landing.duckdb")
    snapshot = tmp_path / "snapshot.duckdb"
    shutil.copyfile(landing, snapshot)
    serving = tmp_path / "serving.duckdb"
    with connect_serving(serving, snapshot) as con:
        con.execute("INSERT INTO model_registry SELECT * FROM landing.model_registry")
    paths = {"serving_path": str(serving), "snapshot_path": str(snapshot), "as_of": LAST}
    one = score_and_advise_flow(**paths)
    assert one["scored"] == one["scoring"]["rows"] == 25
    assert _skipped(one)["brakes"] == [(REAR_PADS, ("norear",))]
    assert _skipped(one)["lv_battery"] == [((LV_VOLTAGE,), ("nolv", "oldcrank"))]
    with connect_serving(serving, snapshot) as con:
        assert con.execute("SELECT count(*) FROM scores WHERE vehicle_id = 'norear'"
                           " AND component = 'brakes'").fetchall() == [(0,)]
    parts = on_dask(score_and_advise_flow)(**paths, buckets=3)
    assert parts["scoring"] == one["scoring"]

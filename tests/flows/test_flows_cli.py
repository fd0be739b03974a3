"""``fleetcare flows run|serve|list`` and the deployments they build."""

from __future__ import annotations

import orjson
import pytest
from flow_fixtures import Stores, last_day

from flows.cli.commands import parse_params
from flows.cli.main import main
from flows.scheduled.config import load_flow_settings
from flows.scheduled.deployments import SCHEDULES, build_deployments, ensure_writer_limit


def test_every_deployment_has_its_schedule_and_store_parameters(tmp_path: object) -> None:
    settings = load_flow_settings(serving_path="s.duckdb", snapshot_path="p.duckdb", buckets=4)
    deployments = {d.name: d for d in build_deployments(settings, "http://crm/leads")}
    assert set(deployments) == set(SCHEDULES) - {"export_cold"}
    assert deployments["train"].schedules[0].schedule.cron == "0 3 * * 0"
    assert deployments["deliver_leads"].schedules[0].schedule.interval.total_seconds() == 60
    assert deployments["backfill"].schedules == []
    assert deployments["features"].parameters == {
        "serving_path": "s.duckdb", "snapshot_path": "p.duckdb", "export_dir": None,
        "buckets": 4}
    assert deployments["deliver_leads"].parameters["crm_url"] == "http://crm/leads"
    with pytest.raises(ValueError, match="export_cold needs an export folder"):
        build_deployments(settings, "http://crm/leads", ("export_cold",))


def test_serve_creates_the_writer_concurrency_limit(prefect_harness: None) -> None:
    assert ensure_writer_limit() == 1


def test_flows_run_takes_paths_and_params(stores: Stores, prefect_harness: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["flows", "run", "features", "--serving", stores.serving, "--snapshot",
                 stores.snapshot, "--param", "days=3"])
    assert code == 0
    result = orjson.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["end"] == last_day().isoformat() and result["rows"] > 0


def test_a_malformed_param_says_how_to_write_it() -> None:
    assert parse_params(["days=14", "start=2025-01-01"]) == {"days": 14, "start": "2025-01-01"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_params(["days"])


def test_flows_list_shows_every_schedule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flows", "list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SCHEDULES) and "every 60 s" in out


def test_an_interval_override_reschedules_only_the_scheduled_deployments() -> None:
    settings = load_flow_settings(serving_path="s.duckdb", snapshot_path="p.duckdb")
    deployments = {d.name: d for d in build_deployments(settings, "http://crm/leads",
                                                        ("train", "health", "backfill"), 5)}
    for name in ("train", "health"):
        (schedule,) = deployments[name].schedules
        assert schedule.schedule.interval.total_seconds() == 5
        assert not hasattr(schedule.schedule, "cron")
    assert deployments["backfill"].schedules == []
    with pytest.raises(ValueError, match="positive number of seconds"):
        build_deployments(settings, "http://crm/leads", ("health",), float("nan"))


@pytest.mark.parametrize("interval", ["0", "-5", "nan", "inf", "soon"])
def test_flows_serve_refuses_an_interval_that_is_not_positive_seconds(
        interval: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["flows", "serve", "--only", "health", "--interval", interval])
    assert exit_info.value.code == 2
    assert "not a positive number of seconds" in capsys.readouterr().err


def test_flows_serve_names_an_unknown_deployment_in_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flows", "serve", "--only", "health", "--only", "helth"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fleetcare flows: error: --only: no deployment named helth")
    assert "deliver_leads" in err and "\n" not in err

"""``fleetcare models``: evaluation on any CSV, battery life on NASA files, the registry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import orjson
import polars as pl
import pytest
from synth_fleet import build_store, evidence_fleet

from flows.cli.main import main
from pipeline.ml.training import train_and_register
from tests.processes import cli, cli_env

NASA = Path(__file__).resolve().parents[3] / "shared" / "data" / "battery_nasa"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _fleet_csv(path: Path, n: int = 600) -> Path:
    rng = np.random.default_rng(7)
    wear = rng.uniform(20, 100, n)
    fails = (wear + rng.normal(0, 5, n) > 90).astype(int)
    cells = [f"{w:.2f}" if i % 9 else "na" for i, w in enumerate(wear)]
    pl.DataFrame({"vehicle": [f"v{i}" for i in range(n)], "pad_wear": cells,
                  "ambient": rng.normal(10, 5, n).round(2), "failed": fails}).write_csv(path)
    return path


def test_evaluate_reports_cost_confusion_and_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    data = _fleet_csv(tmp_path / "fleet.csv")
    code, out, _ = _run(capsys, "models", "evaluate", str(data), "--label", "failed",
                        "--cost-fp", "1", "--cost-fn", "20", "--folds", "4", "--json")
    assert code == 0
    rep = orjson.loads(out)
    assert rep["tp"] + rep["fp"] + rep["tn"] + rep["fn"] == rep["rows"] == 600
    assert rep["total_cost"] == rep["fp"] * 1 + rep["fn"] * 20
    assert rep["features"] == ["pad_wear", "ambient"]
    assert rep["ignored_columns"] == {"vehicle": "v0"}
    assert rep["folds"] == 4 and len(rep["fold_thresholds"]) == 4
    assert rep["recall"] > 0.7
    cheap = orjson.loads(_run(capsys, "models", "evaluate", str(data), "--label", "failed",
                              "--cost-fp", "20", "--cost-fn", "1", "--json")[1])
    assert cheap["threshold"] > rep["threshold"]
    assert cheap["tp"] + cheap["fp"] < rep["tp"] + rep["fp"]


def test_evaluate_text_output_and_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    data = _fleet_csv(tmp_path / "fleet.csv")
    code, out, _ = _run(capsys, "models", "evaluate", str(data), "--label", "failed",
                        "--cost-fp", "1", "--cost-fn", "10")
    assert code == 0
    assert "total cost" in out and "threshold" in out and "left out (not numeric): vehicle" in out
    code, _, err = _run(capsys, "models", "evaluate", str(data), "--label", "broken",
                        "--cost-fp", "1", "--cost-fn", "10")
    assert code == 1 and "no column 'broken'" in err
    code, _, err = _run(capsys, "models", "evaluate", str(data), "--label", "ambient",
                        "--cost-fp", "1", "--cost-fn", "10")
    assert code == 1 and "must hold 0 and 1" in err


def _heavy_tailed_csv(path: Path, n: int = 1000) -> tuple[Path, int]:
    """Counters spanning orders of magnitude, a fifth of cells missing, ~5 % failures."""
    rng = np.random.default_rng(17)
    usage, wear = rng.lognormal(0, 1, n), rng.normal(size=n)
    fails = (wear + 0.4 * rng.normal(size=n) > 1.9).astype(int)
    table: dict[str, list[str]] = {"truck": [f"t{i % 400}" for i in range(n)]}
    for j in range(6):
        counter = usage * np.exp((0.8 if j < 3 else 0.0) * wear + rng.normal(0, 1, n))
        counter *= 10 ** (j % 4)
        table[f"counter_{j}"] = ["na" if rng.random() < 0.2 else f"{v:.1f}" for v in counter]
    table["failed"] = [str(v) for v in fails]
    pl.DataFrame(table).write_csv(path)
    return path, int(fails.sum())


def _fleetcare(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*argv), env=cli_env(), capture_output=True, text=True,
                          timeout=900, check=False)


def test_evaluate_process_reports_baselines_and_the_threshold_spread(tmp_path: Path) -> None:
    data, failures = _heavy_tailed_csv(tmp_path / "trucks.csv")
    args = ("models", "evaluate", str(data), "--label", "failed", "--cost-fp", "10",
            "--cost-fn", "500", "--group", "truck", "--folds", "4")
    text = _fleetcare(*args)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "estimator boosted" in lines[0]
    never = (f"baseline   never warn: cost {500 * failures} "
             f"(tp 0  fp 0  tn {1000 - failures}  fn {failures})")
    assert never in lines
    assert any(ln.startswith("baseline   plain gradient boosting (class-weighted, warns at "
                             "0.5): cost ") for ln in lines)
    spread = next(ln for ln in lines if ln.startswith("threshold "))
    assert "spread min" in spread and " iqr " in spread and " std " in spread
    out = orjson.loads(_fleetcare(*args, "--json").stdout)
    assert out["estimator"] == "boosted" and out["robust"] is None
    assert out["baselines"]["all_negative"]["cost"] == 500 * failures
    gbm = out["baselines"]["plain_gbm"]
    assert gbm["cost"] == 10 * gbm["fp"] + 500 * gbm["fn"]
    assert gbm["tp"] + gbm["fp"] + gbm["tn"] + gbm["fn"] == out["rows"] == 1000
    spread_json = out["threshold_spread"]
    assert spread_json["min"] == min(out["fold_thresholds"])
    assert spread_json["max"] == max(out["fold_thresholds"])
    assert len(out["fold_costs"]) == out["folds"] == 4
    assert sum(out["fold_costs"]) == out["total_cost"] < out["baselines"]["all_negative"]["cost"]
    logistic = orjson.loads(_fleetcare(*args, "--estimator", "logistic", "--json").stdout)
    assert logistic["estimator"] == "logistic" and logistic["robust"] is True
    assert logistic["baselines"] == out["baselines"]


@pytest.mark.parametrize(("extra", "label", "status", "message"), [
    ((), "counter_0", 1, "label column 'counter_0' must hold 0 and 1"),
    (("--folds", "1"), "failed", 2, "--folds must be at least 2, got 1"),
    ((), "nothing", 1, "has no column 'nothing'"),
], ids=["label-not-binary", "one-fold", "no-such-column"])
def test_evaluate_process_refuses_bad_input_in_one_line(
        tmp_path: Path, extra: tuple[str, ...], label: str, status: int, message: str) -> None:
    data, _ = _heavy_tailed_csv(tmp_path / "trucks.csv", n=200)
    run = _fleetcare("models", "evaluate", str(data), "--label", label, "--cost-fp", "10",
                     "--cost-fn", "500", *extra)
    assert run.returncode == status
    assert len(run.stderr.strip().splitlines()) == 1 and message in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""


@pytest.mark.skipif(not NASA.exists(), reason=f"NASA battery data not found at {NASA}")
def test_battery_life_on_nasa_cells(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "models", "battery-life", "--train",
                        str(NASA / "B0006_cycles.csv"), "--train", str(NASA / "B0007_cycles.csv"),
                        "--predict", str(NASA / "B0005_cycles.csv"), "--upto", "84",
                        "--threshold", "1.4", "--json")
    assert code == 0
    rep = orjson.loads(out)
    assert rep["now"] == 84 and rep["observed_crossing"] == 125
    assert abs(rep["error"]) <= 15
    assert rep["low"] <= rep["crossing"] <= rep["high"]
    code, _, err = _run(capsys, "models", "battery-life", "--train",
                        str(NASA / "B0006_cycles.csv"), "--predict",
                        str(NASA / "B0005_cycles.csv"), "--upto", "84", "--threshold", "1.4",
                        "--value", "soc")
    assert code == 1 and "no column 'soc'" in err


def test_list_show_promote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "fleet.duckdb"
    con = build_store(db, evidence_fleet(("brakes",), healthy=4), 80)
    first = {r.component: r for r in train_and_register(con, horizon_days=30)}["brakes"]
    second = {r.component: r for r in train_and_register(con, horizon_days=30)}["brakes"]
    con.close()
    code, out, _ = _run(capsys, "models", "list", "--db", str(db), "--component", "brakes")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("model_id")
    assert any(f"{first.model_id}\t" in ln and "\tyes\t" in ln for ln in lines)
    code, out, _ = _run(capsys, "models", "show", str(second.model_id), "--db", str(db),
                        "--json")
    shown = orjson.loads(out)
    assert code == 0 and shown["promoted"] is False and shown["holdout_vehicles"]
    code, out, _ = _run(capsys, "models", "show", str(second.model_id), "--db", str(db))
    assert code == 0 and out.startswith(f"model_id: {second.model_id}\n")
    assert "\npromoted: no\n" in out and "{" not in out
    assert "holdout_vehicles: " + ", ".join(shown["holdout_vehicles"]) in out
    code, out, _ = _run(capsys, "models", "list", "--db", str(db), "--json")
    assert code == 0 and {m["model_id"] for m in orjson.loads(out)} >= {
        first.model_id, second.model_id}
    code, out, _ = _run(capsys, "models", "promote", str(second.model_id), "--db", str(db))
    assert code == 3 and orjson.loads(out)["promoted"] is False
    code, out, _ = _run(capsys, "models", "promote", str(second.model_id), "--db", str(db),
                        "--force")
    assert code == 0 and orjson.loads(out)["promoted"] is True
    code, _, err = _run(capsys, "models", "show", "nope", "--db", str(db))
    assert code == 1 and "no model 'nope'" in err


def test_evaluate_grouped_by_vehicle_keeps_vehicles_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    rng = np.random.default_rng(3)
    vehicles = np.repeat([f"v{i}" for i in range(12)], 40)
    day = np.tile(np.arange(40), 12)
    failing = np.isin(vehicles, ["v0", "v1", "v2"]) & (day >= 25)
    wear = 30 + day * (1 + np.isin(vehicles, ["v0", "v1", "v2"])) + rng.normal(0, 2, day.size)
    data = tmp_path / "days.csv"
    pl.DataFrame({"vehicle": vehicles, "day": day, "pad_wear": wear,
                  "failed": failing.astype(int)}).write_csv(data)
    code, out, _ = _run(capsys, "models", "evaluate", str(data), "--label", "failed",
                        "--cost-fp", "1", "--cost-fn", "10", "--group", "vehicle", "--json")
    rep = orjson.loads(out)
    assert code == 0 and rep["group"] == "vehicle"
    assert rep["features"] == ["day", "pad_wear"] and rep["ignored_columns"] == {}
    assert rep["folds"] == 3, "three failing vehicles: at most three vehicle-wise folds"
    assert rep["tp"] + rep["fn"] == int(failing.sum())

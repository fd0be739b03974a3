"""Benchmark: feature build, training and scoring for 10k to 1M simulated vehicles.

Prints one JSON object. Each fleet size runs in its own process (so its peak RSS is its own)
on a synthetic store generated directly with numpy/polars, chunk of vehicles by chunk and signal
by signal, and bulk-inserted into a DuckDB file (the store's memory limit is
``--duckdb-memory``, given as ``FLEETCARE_PIPELINE__DB_MEMORY_LIMIT`` the way a deployment
bounds it): one sample per signal per vehicle-day, about 5 % of vehicles degrading towards a
failure per component, each failure recorded as a repair order the day after the data ends
(training labels come from repair orders, with a horizon of half the window). The CAN
simulator is not run: this measures the backend only.

Every throughput comes with a reference measured in the same process on the same data:
- features: a bare DuckDB ``GROUP BY vehicle, day, signal`` over the same telemetry, fetched
  into polars over the same chunks of vehicles as the feature build (whose frames are dropped
  once counted: a million vehicles' features do not fit the memory budget at once);
- training (the deployed estimator, ``estimator_for``) on the first ``TRAIN_VEHICLES``
  vehicles only: a bare impute + scale + logistic regression fit on the same matrix (ours adds
  calibration and the out-of-fold threshold tuning);
- scoring: bare ``predict_proba`` on the same subsample's latest rows against it plus the
  top-3 explanations as JSON (``explain_json``, what ``score_fleet`` writes), medians of three
  after a first call that builds the model's lookup tables (``first_predict_explain_seconds``);
  then the scoring day is materialised (``materialise_daily_features``, what
  the daily ``features`` flow does; timed on its own) and the whole ``score_fleet`` runs over
  the whole fleet (reading the materialised rows, checking their freshness and coverage,
  every component, writing ``scores``), with the deployed estimator; for fleets up to
  ``--built-max`` also ``score_fleet`` with nothing fresh, building every chunk's features
  from the window's telemetry (a store without materialised features).

Peak RSS is reported for the whole process and per phase (the kernel's high-water mark is
reset before each phase through ``/proc/self/clear_refs``).

The exponents are least-squares slopes of log(seconds) on log(vehicles) across the sizes.

    .venv/bin/python bench/models.py [--sizes 10000 100000 1000000] [--days 14]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# ``models`` package: drop that folder before importing ours.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from models import FaultWarningClassifier  # noqa: E402
from pipeline.features.daily import (  # noqa: E402
    CHUNK_VEHICLES,
    attach_labels,
    iter_daily_features,
    label_column,
    model_features,
    vehicle_ranges,
)
from pipeline.features.materialised import (  # noqa: E402
    DayRange,
    latest_telemetry_day,
    materialise_daily_features,
)
from pipeline.ml.scoring import score_fleet  # noqa: E402
from pipeline.ml.training import estimator_for  # noqa: E402
from pipeline.store.connection import connect  # noqa: E402

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
TRAIN_VEHICLES = 10_000
"""Training (not asked at a million vehicles) fits on this many vehicles of the first chunk."""
PADS = [f"Vehicle.Chassis.Axle.Row{r}.Wheel.{s}.Brake.PadWear" for r in (1, 2)
        for s in ("Left", "Right")]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _median_time(fn: Callable[[], Any], repeat: int = 3) -> float:
    return statistics.median(_timed(fn)[1] for _ in range(repeat))


def _signals(n: int, days: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per (vehicle, day) values, shape (n, days); ~5 % of vehicles degrade per component."""
    d = np.arange(days, dtype=float)[None, :]
    sick = {c: rng.uniform(size=(n, 1)) < 0.05 for c in ("hv", "lv", "brk")}
    ramp = np.clip(d / days, 0, 1)
    noise = lambda s: rng.normal(0, s, (n, days))  # noqa: E731
    wear = 30 + 0.05 * d + sick["brk"] * 65 * ramp
    out = {
        "Vehicle.Powertrain.TractionBattery.StateOfHealth": 96 - 0.01 * d - sick["hv"] * 25 * ramp
        + noise(0.1),
        "Vehicle.Powertrain.TractionBattery.CellVoltage.Max": np.full((n, days), 4.1),
        "Vehicle.Powertrain.TractionBattery.CellVoltage.Min": 4.08 - sick["hv"] * 0.2 * ramp,
        "Vehicle.Powertrain.TractionBattery.Temperature.Max": 28 + noise(2),
        "BCM_LowVoltage.CrankMinVoltage": 10.8 - sick["lv"] * 1.3 * ramp + noise(0.03),
        "Vehicle.LowVoltageBattery.CurrentVoltage": 12.6 + noise(0.02),
        "Vehicle.TraveledDistance": rng.uniform(5e3, 6e4, (n, 1)) + rng.uniform(25, 70, (n, 1))
        * d,
        "Vehicle.Exterior.AirTemperature": 8 + noise(3),
    }
    for i, pad in enumerate(PADS):
        out[pad] = wear - i + noise(0.2)
    out["_sick"] = np.column_stack([sick["hv"], sick["lv"], sick["brk"]])
    return out


GENERATED_CHUNK = 50_000
"""Vehicles generated at a time. The random draws are taken chunk by chunk, so this fixes the
data: tied to the pipeline's CHUNK_VEHICLES, a change of the pipeline's chunk changed the
fleet and the model trained on it (and with them the cost of its explanations)."""


def build_store(path: Path, n: int, days: int, seed: int = 0) -> tuple[Any, int]:
    """A migrated store with ``n`` vehicles x ``days`` days of telemetry and ground truth.

    Generated and inserted per chunk of :data:`GENERATED_CHUNK` vehicles and per signal, so
    building a million vehicles holds one chunk's signal at a time; rows land vehicle-ordered
    within each chunk and signal, as a store compacted by vehicle would hold them.
    """
    rng = np.random.default_rng(seed)
    con = connect(path)  # with the process's FLEETCARE_PIPELINE__DB_MEMORY_LIMIT, as deployed
    ids = np.array([f"V{i:07d}" for i in range(n)])
    ts = (np.datetime64("2025-01-01T12:00", "us")
          + np.arange(days) * np.timedelta64(1, "D")).astype("datetime64[us]")
    rows = 0
    sicks = []
    for lo in range(0, n, GENERATED_CHUNK):
        chunk = ids[lo:lo + GENERATED_CHUNK]
        sig = _signals(chunk.size, days, rng)
        sicks.append(sig.pop("_sick"))
        for name in list(sig):
            values = sig.pop(name)
            frame = pl.DataFrame({
                "vehicle_id": np.repeat(chunk, days), "ts": np.tile(ts, chunk.size),
                "signal": name, "value": values.ravel(), "msg_id": "bench"}).with_columns(
                    pl.col("ts").dt.replace_time_zone("UTC"))
            con.register("_t", frame)
            con.execute(
                "INSERT INTO telemetry SELECT vehicle_id, ts, signal, value, msg_id FROM _t")
            con.unregister("_t")
            rows += frame.height
            del frame, values
    sick = np.concatenate(sicks)
    fail = START + dt.timedelta(days=days + 5)
    end = START + dt.timedelta(days=days + 60)
    truth = pl.concat([
        pl.DataFrame({"vehicle_id": ids, "component": comp, "sick": sick[:, j]}).select(
            "vehicle_id", "component",
            pl.when(pl.col("sick")).then(pl.lit(fail)).alias("failure_ts"),
            pl.lit(50.0).alias("health_at_end"), pl.lit(START).alias("sim_start_ts"),
            pl.lit(end).alias("sim_end_ts"), pl.lit("bench").alias("msg_id"))
        for j, comp in enumerate(("traction_battery", "lv_battery", "brakes"))])
    con.register("_g", truth)
    con.execute("INSERT INTO ground_truth SELECT * FROM _g")  # the referee, never the labels
    con.unregister("_g")
    opened = START + dt.timedelta(days=days, hours=10)  # the day after the data ends
    orders = pl.concat([
        pl.DataFrame({"vehicle_id": ids[sick[:, j]]}).select(
            (pl.lit("RO-") + pl.col("vehicle_id") + f"-{comp}").alias("order_id"), "vehicle_id",
            pl.lit(opened).alias("opened_at"), pl.lit(None, pl.Float64).alias("odometer_km"),
            pl.lit(comp).alias("component"), pl.lit("BENCH").alias("operation_code"),
            pl.lit("unscheduled").alias("kind"), pl.lit(None, pl.String).alias("lead_id"),
            pl.lit(START).alias("imported_at"))
        for j, comp in enumerate(("traction_battery", "lv_battery", "brakes"))])
    con.register("_o", orders)
    con.execute("INSERT INTO repair_orders SELECT * FROM _o")  # what training learns from
    con.unregister("_o")
    return con, rows


def _bare_pipeline() -> Any:
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                         StandardScaler(),
                         LogisticRegression(class_weight="balanced", max_iter=1000))


def _bare_group_by(con: Any, ranges: list[tuple[str, str]]) -> int:
    """The reference: DuckDB's own per (vehicle, day, signal) aggregate, chunk by chunk."""
    out = 0
    for first, last in ranges:
        out += con.sql(
            "SELECT vehicle_id, CAST(ts AS DATE) d, signal, avg(value) FROM telemetry"
            " WHERE vehicle_id >= $first AND vehicle_id <= $last GROUP BY ALL",
            params={"first": first, "last": last}).pl().height
    return out


def _features(con: Any) -> tuple[int, pl.DataFrame]:
    """Build the whole fleet's features chunk by chunk; keep the training subsample only."""
    rows, keep = 0, None
    for chunk in iter_daily_features(con):
        rows += chunk.height
        if keep is None:
            ids = chunk["vehicle_id"].unique().sort().head(TRAIN_VEHICLES)
            keep = chunk.filter(pl.col("vehicle_id").is_in(ids.implode()))
    return rows, keep if keep is not None else pl.DataFrame()


def run_one(n: int, days: int, built_max: int) -> dict[str, Any]:
    """Measure one fleet size; returns throughputs, ratios and peak RSS (overall and per
    phase: the kernel's high-water mark is reset before each phase)."""
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        (con, rows), t_load = _timed(lambda: build_store(Path(tmp) / "b.duckdb", n, days))
        peaks["load"] = _phase_peak_mb()
        memory = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
        ranges = vehicle_ranges(con, CHUNK_VEHICLES)
        _, t_ref = _timed(lambda: _bare_group_by(con, ranges))
        (n_feats, feats), t_feat = _timed(lambda: _features(con))
        peaks["features"] = _phase_peak_mb()
        training, model, names = _train(con, feats, days)
        peaks["training"] = _phase_peak_mb()
        _register_for_scoring(con, model, names)
        del feats, model
        last = latest_telemetry_day(con)
        assert last is not None
        n_mat, t_mat = _timed(lambda: materialise_daily_features(con, DayRange(last, last)))
        peaks["materialise"] = _phase_peak_mb()
        report, t_score = _timed(lambda: score_fleet(con))
        peaks["score_fleet"] = _phase_peak_mb()
        built: dict[str, Any] = {"skipped": f"fleets over {built_max} vehicles"}
        if n <= built_max:
            con.execute("DELETE FROM daily_feature_inputs")  # nothing fresh: build every chunk
            rebuilt, t_built = _timed(lambda: score_fleet(con))
            peaks["score_fleet_built"] = _phase_peak_mb()
            built = {"rows": rebuilt.rows, "rows_per_s": rebuilt.rows / t_built,
                     "seconds": t_built, "materialised_vehicles": rebuilt.materialised_vehicles}
        con.close()
    # the resets lower ru_maxrss too: the process's peak is the largest phase's
    peak_mb = max([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, *peaks.values()])
    return {
        "vehicles": n, "days": days, "telemetry_rows": rows, "feature_rows": n_feats,
        "chunk_vehicles": CHUNK_VEHICLES, "duckdb_memory_limit": memory,
        "load_rows_per_s": rows / t_load, "load_seconds": t_load,
        "features": {"telemetry_rows_per_s": rows / t_feat, "seconds": t_feat,
                     "bare_group_by_seconds": t_ref, "ratio_to_bare_group_by": t_ref / t_feat},
        "training": training["fit"],
        "scoring": {**training["predict"],
                    "materialise_day_rows": n_mat, "materialise_day_seconds": t_mat,
                    "score_fleet_rows": report.rows,
                    "score_fleet_rows_per_s": report.rows / t_score,
                    "score_fleet_seconds": t_score,
                    # the bare GROUP BY is one pass over the same fleet's telemetry: above 1,
                    # scoring the fleet takes less time than that pass, whatever the machine
                    "score_fleet_ratio_to_bare_group_by": t_ref / t_score,
                    "score_fleet_materialised_vehicles": report.materialised_vehicles,
                    "score_fleet_built": built},
        "peak_rss_mb": round(peak_mb, 1),
        "phase_peak_rss_mb": {k: round(v, 1) for k, v in peaks.items()},
    }


def _train(con: Any, feats: pl.DataFrame, days: int
           ) -> tuple[dict[str, dict[str, Any]], FaultWarningClassifier, list[str]]:
    """Fit the deployed estimator on the training subsample and time its predictions against
    the bare references; the matrices are dropped on return (only the model is kept)."""
    labelled = attach_labels(feats, con, max(1, days // 2))
    names = model_features("brakes")
    part = labelled.filter(pl.col(label_column("brakes")).is_not_null())
    X = part.select(pl.col(names).cast(pl.Float64))
    y = part[label_column("brakes")].to_numpy().astype(int)
    groups = part["vehicle_id"].to_numpy()
    model, t_fit = _timed(lambda: estimator_for("brakes", names, 0).fit(X, y, groups=groups))
    _, t_bare_fit = _timed(lambda: _bare_pipeline().fit(X, y))
    latest = feats.filter(pl.col("day") == pl.col("day").max()).select(
        pl.col(names).cast(pl.Float64))
    # What scoring runs: probabilities and the top-3 explanations as JSON text per row (not
    # ``explain``'s dicts, which no pipeline path builds). The first call also builds the
    # model's lookup tables (once per loaded model, kept for every chunk a scoring run
    # explains): timed apart, then medians of three.
    def explained() -> object:
        return model.predict_proba(latest), model.explain_json(latest, top=3)
    _, t_first = _timed(explained)
    t_pred = _median_time(lambda: model.predict_proba(latest))
    t_explain = _median_time(explained)
    fit = {"vehicles": int(feats["vehicle_id"].n_unique()), "rows": int(y.size),
           "rows_per_s": y.size / t_fit, "seconds": t_fit, "ratio_to_bare_fit": t_bare_fit / t_fit}
    predict = {"rows": latest.height, "predict_explain_rows_per_s": latest.height / t_explain,
               "ratio_to_bare_predict_proba": t_pred / t_explain,
               "first_predict_explain_seconds": t_first}
    return {"fit": fit, "predict": predict}, model, names


def _phase_peak_mb() -> float:
    """This process's peak RSS since the last call, in MB (Linux: VmHWM, then reset it)."""
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    Path("/proc/self/clear_refs").write_text("5")
    return hwm / 1024


def _register_for_scoring(con: Any, model: FaultWarningClassifier, names: list[str]) -> None:
    from pipeline.ml import registry

    new = registry.NewModel("brakes-bench", "brakes", names, {"horizon_days": 30}, (None, None),
                            [], [], {}, "bench")
    registry.save_model(con, new, model)
    registry.set_promoted(con, new.model_id, {"promoted": True, "reason": "bench"})


def main() -> None:
    """Run each size in a child process and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--duckdb-memory", default="1GB",
                        help="each size's process runs with FLEETCARE_PIPELINE__DB_MEMORY_LIMIT"
                        " set to this (the store's memory limit, as a deployment sets it)")
    parser.add_argument("--built-max", type=int, default=100_000,
                        help="also time score_fleet building every chunk from telemetry (as"
                        " with no fresh materialised day) for fleets up to this size")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.days, args.built_max)))
        return
    results = []
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--days",
                              str(args.days), "--built-max", str(args.built_max)],
                             capture_output=True, text=True, check=True,
                             env={**os.environ,
                                  "FLEETCARE_PIPELINE__DB_MEMORY_LIMIT": args.duckdb_memory})
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"benchmark": "models", "cpu_count": _cpus(), "runs": results,
                      "exponents": _exponents(results)}))


def _exponents(results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Slope of log(seconds) on log(vehicles): 1.0 is linear in the fleet size. The bare
    ``GROUP BY``'s own slope, from the same runs, is the reference: a machine that slows down
    while the larger sizes run steepens both."""
    if len(results) < 2:
        return {"features": None, "score_fleet": None, "materialise_day": None,
                "bare_group_by": None}
    n = np.log([r["vehicles"] for r in results])

    def slope(seconds: list[float]) -> float:
        return round(float(np.polyfit(n, np.log(seconds), 1)[0]), 3)

    return {"features": slope([r["features"]["seconds"] for r in results]),
            "score_fleet": slope([r["scoring"]["score_fleet_seconds"] for r in results]),
            "materialise_day": slope([r["scoring"]["materialise_day_seconds"] for r in results]),
            "bare_group_by": slope([r["features"]["bare_group_by_seconds"] for r in results])}


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()

"""Benchmark: are the warnings worth a phone call? Per-warning figures on vehicles never seen.

For each seed, a simulated fleet (default 300 vehicles over 730 days) lands in a real DuckDB
store through the production import paths: its master data, temperature outlook and workshop
history go through ``fleetcare fleet import``'s and ``fleetcare service import``'s functions,
and its telemetry and fault codes come from the simulator's fast daily path
(:func:`edge.sim.landed_days`: what ingest would store from the agents' messages, without
running agents). Features and labels are the production ones (repair orders only, never the
ground truth). Vehicles are split in half, stratified by failure, and per component:

- each estimator (``--estimators``) is fitted on the training vehicles, its threshold tuned on
  their vehicle-grouped out-of-fold calls (:func:`pipeline.ml.events.tune_threshold`), then
  judged on the held-out vehicles by :mod:`models.warnings`;
- a **one-feature rule**, measured in the same run on the same rows: the component's health
  signal as it is displayed (SoH at or below a cut, the most worn pad at or above one, the
  cranking dip at or below one), its cut tuned on the training vehicles by the same cost.

Targets (issue 17), for every component and every seed: a warning at least a day before
>= 90 % of failures, a median lead >= 14 days, onset precision >= 0.8, and a lower cost than
the rule (``cost_ratio_to_rule`` < 1). All seeds are reported, not the best. Prints one JSON
object.

Each component is labelled and judged at its production horizon
(:data:`pipeline.features.labels.HORIZON_DAYS`); ``--horizon`` sets one for all of them and
``--component-horizon brakes=45`` one for a single part.

    .venv/bin/python bench/quality.py [--vehicles 300] [--days 730] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# ``models`` package: drop that folder before importing ours.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

from edge.sim import (  # noqa: E402
    VehicleSpec,
    landed_days,
    make_fleet,
    params_of,
    placement,
    vehicles_of,
    write_master_data,
    write_repair_orders,
)
from edge.sim.masterdata import write_region_forecasts  # noqa: E402
from edge.sim.wear import DAY_S, HealthModel  # noqa: E402
from edge.wire.contract import COMPONENTS  # noqa: E402
from models import FaultWarningClassifier, NoStartRiskClassifier  # noqa: E402
from models.evaluate import split_by_vehicle  # noqa: E402
from models.warnings import (  # noqa: E402
    FAILURE,
    LifeEvents,
    WarningFigures,
    alarm_onsets,
    tune_event_threshold,
)
from pipeline.features.daily import (  # noqa: E402
    attach_labels,
    build_daily_features,
    label_column,
    model_features,
)
from pipeline.features.labels import HorizonError, horizons  # noqa: E402
from pipeline.fleet.upsert import import_fleet  # noqa: E402
from pipeline.ml.events import (  # noqa: E402
    ONSET_PRECISION_FLOOR,
    day_numbers,
    held_out_events,
    life_events,
    tune_threshold,
)
from pipeline.service.importer import import_repair_orders  # noqa: E402
from pipeline.store.connection import connect  # noqa: E402

START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
RULES: dict[str, tuple[str, float]] = {
    "traction_battery": ("soh", -1.0),
    "lv_battery": ("crank_dip_min", -1.0),
    "brakes": ("pad_wear_max", 1.0),
}
"""Per component, the one feature of the rule and its sign (-1: alarm when low)."""
TARGETS = {"warned_share": 0.9, "median_lead_days": 14.0, "onset_precision": 0.8}
PLACED_SHARE = {"ev": {"traction_battery": 0.5, "lv_battery": 0.25, "brakes": 0.25},
                "ice": {"lv_battery": 0.5, "brakes": 0.5}}
"""Which component a vehicle placed near a failure gets, so that each has enough failures."""
FAILURE_KINDS = ("unscheduled", "roadside")


def _fleet(n: int, seed: int, days: int, failing_share: float) -> list[VehicleSpec]:
    """``make_fleet``'s vehicles, a share of them placed to fail somewhere in the window.

    ``make_fleet`` places its near-failures within half a year (for short demos); a two-year
    benchmark spreads them over the whole window after the 30-day warm-up instead.
    """
    rng = random.Random(f"bench-quality/{seed}")
    specs = make_fleet(n, seed=seed, failing_share=0.0, start_ts=START.timestamp())
    out = []
    for spec in specs:
        if rng.random() >= failing_share:
            out.append(spec)
            continue
        shares = PLACED_SHARE[spec.variant]
        component = rng.choices(list(shares), list(shares.values()))[0]
        out.append(_placed(spec, component, rng.uniform(35.0, days - 20.0), rng))
    return out


def _placed(spec: VehicleSpec, component: str, days: float, rng: random.Random) -> VehicleSpec:
    params = params_of(spec)
    if component == "traction_battery":
        return replace(spec, battery_soh=round(placement.soh_failing_after(params, days), 2))
    if component == "brakes":
        return replace(spec, pad_wear=round(placement.pad_wear_failing_after(params, days), 2))
    when = START.timestamp() + days * DAY_S
    margin = rng.uniform(0.95, 1.03)
    return replace(spec, lv_resistance_mohm=round(
        placement.resistance_failing_at(params, when, margin), 3))


def sudden_shares(specs: list[VehicleSpec], days: int) -> dict[str, Any]:
    """Per component, the failures in the window (unscheduled or roadside orders) and the
    share of them that were sudden: announced by no signal, so no model can warn them."""
    out: dict[str, Any] = {}
    counts = {c: [0, 0] for c in COMPONENTS}
    for spec in specs:
        model = HealthModel(params_of(spec), spec.seed, START.timestamp())
        for _ in range(days):
            model.step()
        failed = [o for o in model.orders if o.day < days and o.kind in FAILURE_KINDS]
        for order in failed:
            counts[order.component][0] += 1
            counts[order.component][1] += any(
                c == order.component and 0 <= order.day - d <= 5 for d, c in model.sudden)
    for component, (n, sudden) in counts.items():
        out[component] = {"failures": n, "sudden": sudden,
                          "sudden_share": round(sudden / n, 3) if n else None}
    return out


def _landed(job: tuple[VehicleSpec, int, float]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One vehicle's telemetry and fault codes, as frames ready to insert."""
    spec, days, snapshot_s = job
    got = landed_days(spec, start_ts=START.timestamp(), days=days, snapshot_s=snapshot_s)
    ts, signal, value = zip(*got.telemetry, strict=True) if got.telemetry else ((), (), ())
    telemetry = pl.DataFrame({"vehicle_id": spec.vehicle_id, "ts": list(ts),
                              "signal": list(signal), "value": list(value)},
                             schema={"vehicle_id": pl.String, "ts": pl.Float64,
                                     "signal": pl.String, "value": pl.Float64})
    codes = pl.DataFrame(
        [(spec.vehicle_id, *row) for row in got.fault_codes], orient="row",
        schema={"vehicle_id": pl.String, "ts": pl.Float64, "code": pl.String,
                "status": pl.String, "ecu": pl.String, "cleared": pl.Boolean})
    return telemetry, codes


def build_store(path: Path, specs: list[VehicleSpec], days: int, seed: int, jobs: int,
                snapshot_s: float) -> dict[str, Any]:
    """Land the fleet in a store at ``path``; returns the counts and times of each step."""
    con = connect(path)
    files = path.parent / "files"
    t0 = time.perf_counter()
    paths = write_master_data(files, vehicles_of(specs), seed=seed, start=START.date())
    paths["region_forecasts"] = write_region_forecasts(files, seed=seed, first=START.date(),
                                                       days=days + 30)
    import_fleet(con, paths, now=START)
    orders = write_repair_orders(files, specs, start_ts=START.timestamp(), days=days)
    import_repair_orders(con, orders, now=START + dt.timedelta(days=days + 1))
    t1 = time.perf_counter()
    rows = 0
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for telemetry, codes in pool.imap_unordered(
                _landed, [(s, days, snapshot_s) for s in specs], chunksize=4):
            rows += _insert(con, telemetry, codes)
    t2 = time.perf_counter()
    n_orders = con.execute("SELECT kind, count(*) FROM repair_orders GROUP BY ALL").fetchall()
    con.close()
    return {"telemetry_rows": rows, "repair_orders": dict(n_orders),
            "import_s": round(t1 - t0, 1), "landing_s": round(t2 - t1, 1)}


def _insert(con: Any, telemetry: pl.DataFrame, codes: pl.DataFrame) -> int:
    for name, frame in (("_t", telemetry), ("_c", codes)):
        con.register(name, frame)
    con.execute("INSERT INTO telemetry SELECT vehicle_id, to_timestamp(ts), signal, value,"
                " vehicle_id || '-sim' FROM _t")
    con.execute("INSERT INTO dtc_events (vehicle_id, ts, code, status, ecu, source, cleared,"
                " msg_id) SELECT vehicle_id, to_timestamp(ts), code, status, ecu, 'can',"
                " cleared, vehicle_id || '-sim' FROM _c")
    for name in ("_t", "_c"):
        con.unregister(name)
    return telemetry.height


def _estimator(name: str, component: str, names: list[str], seed: int) -> Any:
    """The estimator ``name`` stands for; ``deployed:interactions=2,n_estimators=400`` is the
    deployed one (or ``boosted``) with those parameters changed (``set_params``)."""
    base, _, changed = name.partition(":")
    if changed:
        return _estimator(base, component, names, seed).set_params(**_parameters(changed))
    if name == "logistic":
        if component == "lv_battery":
            return NoStartRiskClassifier(dip_column=names.index("crank_dip_min"),
                                         trend_column=names.index("crank_dip_trend_14d"),
                                         random_state=seed)
        return FaultWarningClassifier(random_state=seed)
    if name == "boosted":
        from models import BoostedWarningClassifier

        return BoostedWarningClassifier(random_state=seed)
    from pipeline.ml.training import estimator_for

    return estimator_for(component, names, seed)


def _parameters(text: str) -> dict[str, Any]:
    """``"a=1,b=0.5,c=none"`` as ``{"a": 1, "b": 0.5, "c": None}`` (numbers where they parse)."""
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        parsed: Any = value
        if value.lower() == "none":
            parsed = None
        else:
            for kind in (int, float):
                try:
                    parsed = kind(value)
                    break
                except ValueError:
                    continue
        out[key.strip()] = parsed
    return out


def _judged(figures: WarningFigures, cost: float) -> dict[str, Any]:
    out = {**figures.as_json(), **figures.counts(), "cost": cost}
    share = figures.warned / figures.failures if figures.failures else None
    out["warned_share"] = share
    out["meets"] = {
        "warned_share": share is not None and share >= TARGETS["warned_share"],
        "median_lead_days": (figures.median_lead_days or 0.0) >= TARGETS["median_lead_days"],
        "onset_precision": (figures.onset_precision or 0.0) >= TARGETS["onset_precision"]}
    return out


def evaluate_component(con: Any, labelled: pl.DataFrame, component: str, seed: int,
                       horizon: int, estimators: list[str],
                       floors: list[float | None]) -> dict[str, Any]:
    """The rule and each estimator on one component's held-out vehicles."""
    rows = labelled.filter(pl.col(label_column(component)).is_not_null())
    y = rows[label_column(component)].to_numpy().astype(bool)
    ids = rows["vehicle_id"].to_numpy()
    train, test = split_by_vehicle(ids, 0.5, seed, stratify=y)
    train_rows, test_rows = rows.filter(pl.Series(train)), rows.filter(pl.Series(test))
    events = life_events(con, component)
    names = model_features(component)
    out: dict[str, Any] = {"n_train_vehicles": int(np.unique(ids[train]).size),
                           "n_test_vehicles": int(np.unique(ids[test]).size)}
    rule = _rule(train_rows, test_rows, component, events, horizon)
    out["rule"] = rule
    for name in estimators:
        t0 = time.perf_counter()
        model = _estimator(name, component, names, seed).fit(
            train_rows.select(pl.col(names).cast(pl.Float64)), y[train], groups=ids[train])
        fit_s = round(time.perf_counter() - t0, 1)
        for floor in floors:
            key = name if floor == ONSET_PRECISION_FLOOR else f"{name}@floor={floor}"
            tune_threshold(model, train_rows, names, y[train], events, horizon, seed,
                           min_precision=floor)
            figures = held_out_events(model, test_rows, names, events, horizon)
            cost = figures.cost(model.cost_fp, model.cost_fn)
            judged = _judged(figures, cost)
            judged["cost_ratio_to_rule"] = cost / rule["cost"] if rule["cost"] else None
            judged["meets"]["beats_rule"] = cost < rule["cost"]
            judged["threshold"] = float(model.threshold_)
            judged["min_precision"] = floor
            judged["false_onsets_by_kind"] = false_onset_kinds(model, test_rows, names, events,
                                                               horizon)
            judged["fit_s"] = fit_s
            out[key] = judged
    return out


def false_onset_kinds(model: Any, rows: pl.DataFrame, names: list[str], events: LifeEvents,
                      horizon: int) -> dict[str, int]:
    """Held-out false onsets by what followed them: ``no_failure`` (the vehicle's part never
    failed in the data: noise), ``too_early`` (it failed, more than ``horizon`` days later),
    ``other`` (a renewal or confirmed part beyond the horizon); ``repeat`` counts onsets that
    re-fired on a vehicle and part life that already had one."""
    proba = model.predict_proba(rows.select(pl.col(names).cast(pl.Float64)))[:, 1]
    found = alarm_onsets(rows["vehicle_id"].to_numpy(), day_numbers(rows["day"]),
                         proba >= model.threshold_, events, horizon)
    out = {"no_failure": 0, "too_early": 0, "other": 0, "repeat": 0}
    seen: set[tuple[Any, float]] = set()
    for vehicle, day, outcome in zip(found.vehicle, found.day, found.outcome, strict=True):
        ends, kinds = events.of_vehicle(vehicle)
        later = ends > day
        nxt = (float(ends[later][0]), str(kinds[later][0])) if later.any() else None
        life = (vehicle, nxt[0] if nxt is not None else np.inf)
        out["repeat"] += life in seen
        seen.add(life)
        if outcome is not False:
            continue
        if nxt is None or FAILURE not in kinds[later].tolist():
            out["no_failure" if nxt is None else "other"] += 1
        elif nxt[1] == FAILURE:
            out["too_early"] += 1
        else:
            out["other"] += 1
    return out


def _rule(train_rows: pl.DataFrame, test_rows: pl.DataFrame, component: str, events: Any,
          horizon: int) -> dict[str, Any]:
    feature, sign = RULES[component]

    def score(rows: pl.DataFrame) -> np.ndarray:
        values = rows[feature].cast(pl.Float64).to_numpy()
        return sign * values  # NaN (no reading that day) never alarms

    train_score = score(train_rows)
    cut, _ = tune_event_threshold(train_rows["vehicle_id"].to_numpy(),
                                  day_numbers(train_rows["day"]), train_score, events, horizon,
                                  cost_fp=1.0, cost_fn=10.0)
    from models.warnings import warning_events

    figures = warning_events(test_rows["vehicle_id"].to_numpy(), day_numbers(test_rows["day"]),
                             score(test_rows), cut, events, horizon)
    judged = _judged(figures, figures.cost(1.0, 10.0))
    judged.update(feature=feature, alarm=f"{feature} {'<=' if sign < 0 else '>='} "
                                         f"{sign * cut:g}")
    return judged


def run_seed(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Land, featurise and judge one seed's fleet."""
    with tempfile.TemporaryDirectory(prefix="fleetcare-quality-") as tmp:
        path = Path(tmp) / "fleet.duckdb"
        specs = _fleet(args.vehicles, seed, args.days, args.failing_share)
        landing = build_store(path, specs, args.days, seed, args.jobs, args.snapshot_s)
        con = connect(path)
        t0 = time.perf_counter()
        per = _horizons(args)
        labelled = attach_labels(build_daily_features(con), con, per)
        features_s = time.perf_counter() - t0
        result: dict[str, Any] = {"seed": seed, "vehicles": len(specs), "horizons": per,
                                  **landing,
                                  "sudden": sudden_shares(specs, args.days),
                                  "feature_rows": labelled.height,
                                  "features_s": round(features_s, 1), "components": {}}
        for component in COMPONENTS:
            result["components"][component] = evaluate_component(
                con, labelled, component, seed, per[component], args.estimators,
                _floors(args.precision_floors))
        con.close()
    return result


def _horizons(args: argparse.Namespace) -> dict[str, int]:
    """The production horizons with ``--horizon`` and then ``--component-horizon`` applied."""
    per = horizons(args.horizon)
    for item in args.component_horizon:
        component, _, days = item.partition("=")
        if not days.strip().isdigit():
            raise HorizonError(f"{item!r} is not PART=DAYS")
        per = horizons({**per, component: int(days)})
    return per


def _floors(given: list[str]) -> list[float | None]:
    """``--precision-floors`` as numbers ("none": cost alone); the deployed floor first."""
    floors = [None if f.lower() == "none" else float(f) for f in given]
    return [ONSET_PRECISION_FLOOR, *[f for f in floors if f != ONSET_PRECISION_FLOOR]]


def summary(seeds: list[dict[str, Any]], estimators: list[str]) -> dict[str, Any]:
    """Per component and estimator: the worst and median seed of each target figure."""
    out: dict[str, Any] = {}
    for component in COMPONENTS:
        per: dict[str, Any] = {}
        names = [k for k in seeds[0]["components"][component] if k.split("@")[0] in
                 [*estimators, "rule"]]
        for name in names:
            judged = [s["components"][component][name] for s in seeds]
            per[name] = {
                key: {"min": min(vals), "median": statistics.median(vals)}
                for key in ("warned_share", "median_lead_days", "onset_precision",
                            "failures", "cost")
                if (vals := [j[key] for j in judged if j[key] is not None])}
            per[name]["all_targets_met_every_seed"] = all(all(j["meets"].values())
                                                          for j in judged)
        out[component] = per
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vehicles", type=int, default=300)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--horizon", type=int, default=None,
                        help="one horizon (days) for every component; default: each its own")
    parser.add_argument("--component-horizon", nargs="*", default=[], metavar="PART=DAYS",
                        help="a horizon for one component, e.g. brakes=45")
    parser.add_argument("--failing-share", type=float, default=0.8,
                        help="share of vehicles placed to fail somewhere in the window")
    parser.add_argument("--snapshot-s", type=float, default=0.5,
                        help="seconds of bus per simulated day (speed samples per day)")
    parser.add_argument("--estimators", nargs="+", default=["deployed"],
                        help="deployed (what training uses), logistic, boosted; NAME:k=v,... "
                             "changes that estimator's parameters, e.g. "
                             "deployed:interactions=2")
    parser.add_argument("--precision-floors", nargs="*", default=[],
                        help="also judge each estimator tuned with these out-of-fold onset "
                             "precision floors ('none': cost alone), beside the deployed one")
    parser.add_argument("--jobs", type=int, default=2, help="processes landing vehicles")
    args = parser.parse_args()
    try:
        _horizons(args)
    except HorizonError as exc:
        parser.error(str(exc))
    seeds = [run_seed(seed, args) for seed in args.seeds]
    print(json.dumps({"config": vars(args), "targets": TARGETS,
                      "summary": summary(seeds, args.estimators), "seeds": seeds}, indent=1))


if __name__ == "__main__":
    main()

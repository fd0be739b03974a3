"""The simulated workshop: failures repaired a few days later, parts renewed, orders exported."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
from pathlib import Path

from edge.sim.simulator import (
    VehicleSimulator,
    VehicleSpec,
    load_reference_dbc,
    make_fleet,
    params_of,
)
from edge.sim.wear import DAY_S, PAD_WEAR_FAILED, HealthModel
from edge.sim.workshop import COLUMNS, vehicle_orders, write_repair_orders
from tests.processes import cli, cli_env

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()


def test_a_failure_is_repaired_within_five_days_and_the_part_is_new_after_it() -> None:
    spec = VehicleSpec("V1", "ice", "central", seed=10, pad_wear=95.0, km_per_day=60.0)
    model = HealthModel(params_of(spec), spec.seed, START)
    states = [model.step() for _ in range(120)]
    failed = next(s.day for s in states if s.max_pad_wear >= PAD_WEAR_FAILED)
    repair = next(o for o in model.orders if o.component == "brakes")
    assert repair.kind in ("unscheduled", "roadside")
    assert 0 <= repair.day - failed <= 5
    assert repair.day * DAY_S <= repair.opened_ts - START < (repair.day + 1) * DAY_S
    after = states[repair.day + 1]
    assert after.renewed == ("brakes",)
    assert after.max_pad_wear < 5.0, "new pads from the morning after the order"
    assert all(s.max_pad_wear >= PAD_WEAR_FAILED for s in states[failed:repair.day + 1])


def test_orders_agree_with_the_ground_truth_and_stay_inside_the_window() -> None:
    db = load_reference_dbc()
    for spec in make_fleet(30, seed=4, start_ts=START):
        orders = vehicle_orders(spec, start_ts=START, days=120)
        assert all(o.day < 120 for o in orders)
        truth = VehicleSimulator(spec, db, start_ts=START, days=120).truth("t")
        for component in truth.components:
            failures = [o for o in orders if o.component == component.component
                        and o.kind in ("unscheduled", "roadside")]
            if component.failure_ts is None or component.failure_ts >= START + 115 * DAY_S:
                continue  # no failure, or its order may fall past the window
            assert failures, (spec.vehicle_id, component.component)
            delay = failures[0].opened_ts - component.failure_ts
            assert 0 < delay < 6 * DAY_S


def test_the_same_fleet_and_seed_write_the_same_file(tmp_path: Path) -> None:
    specs = make_fleet(20, seed=2, start_ts=START)
    a = write_repair_orders(tmp_path / "a", specs, start_ts=START, days=90)
    b = write_repair_orders(tmp_path / "b", make_fleet(20, seed=2, start_ts=START),
                            start_ts=START, days=90)
    assert a.read_bytes() == b.read_bytes()
    with a.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == COLUMNS
    assert {r["kind"] for r in rows} >= {"unscheduled", "inspection"}
    vins = {s.vehicle_id: s.vin for s in specs}
    assert all(r["vin"] == vins[r["vehicle_id"]] for r in rows)
    assert len({r["order_id"] for r in rows}) == len(rows)


def _workshop(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli("sim", "workshop", "--vehicles", "40", "--days", "200", "--seed",
                              "3", "--out", str(tmp_path), *extra),
                          env=cli_env(), capture_output=True, text=True, check=False)


def _failures(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for row in csv.DictReader(handle)
                   if row["kind"] in ("unscheduled", "roadside"))


def test_a_larger_failing_share_places_more_failures_in_the_same_fleet(tmp_path: Path) -> None:
    few, many = tmp_path / "few", tmp_path / "many"
    assert _workshop(few, "--failing-share", "0").returncode == 0
    assert _workshop(many, "--failing-share", "0.9").returncode == 0
    assert _failures(many / "repair_orders.csv") > 2 * max(1, _failures(few / "repair_orders.csv"))
    bad = _workshop(tmp_path / "bad", "--failing-share", "1.5")
    assert bad.returncode == 2 and "give a share from 0 to 1" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "bad").exists()

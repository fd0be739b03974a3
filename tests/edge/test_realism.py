"""The simulator is not a threshold puzzle: warm-up, estimated SoH, staged pad sensors, cold
mornings, days without data, sudden failures, and vehicles that differ (issue 17, item 1)."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter
from itertools import pairwise
from pathlib import Path

import pytest

from edge.sim.daily import landed_days
from edge.sim.faults import P0562_DIP_V
from edge.sim.masterdata import vehicles_of, write_master_data
from edge.sim.simulator import (
    SimDay,
    VehicleSimulator,
    VehicleSpec,
    load_reference_dbc,
    make_fleet,
    params_of,
)
from edge.sim.usage import MODELS
from edge.sim.wear import (
    DIP_FAILED_V,
    SOH_FAILED,
    WARMUP_DATA_DAYS,
    DayState,
    HealthModel,
    crank_dip_v,
)
from edge.sim.workshop import vehicle_orders

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
PAD_SIGNALS = tuple(f"Vehicle.Chassis.Axle.Row{r}.Wheel.{s}.Brake.PadWear"
                    for r in (1, 2) for s in ("Left", "Right"))


def _days(spec: VehicleSpec, days: int) -> list[SimDay]:
    sim = VehicleSimulator(spec, load_reference_dbc(), start_ts=START, days=days)
    return list(sim.iter_readings())


def _states(spec: VehicleSpec, days: int) -> tuple[HealthModel, list[DayState]]:
    model = HealthModel(params_of(spec), spec.seed, START)
    return model, [model.step() for _ in range(days)]


def _first_failure(states: list[DayState], is_ev: bool) -> DayState | None:
    return next((s for s in states if any(s.failed(is_ev))), None)


@pytest.mark.parametrize("spec", [
    VehicleSpec("W1", "ev", "central", seed=1, battery_soh=68.0),
    VehicleSpec("W2", "ice", "south", seed=2, pad_wear=99.5, km_per_day=120.0),
    VehicleSpec("W3", "ice", "north", seed=3, lv_resistance_mohm=14.0),
], ids=["failed-pack", "worn-pads", "weak-12v-in-winter"])
def test_a_state_that_would_fail_in_the_warm_up_is_clamped_until_it_does_not(
        spec: VehicleSpec) -> None:
    model, states = _states(spec, 400)
    first = _first_failure(states, model.params.is_ev)
    assert first is not None, "the clamp went too far: the part never fails"
    assert first.data_days >= WARMUP_DATA_DAYS
    assert first.day < 200  # clamped just enough, not made new
    unclamped = HealthModel(params_of(spec), spec.seed, START, settle=False)
    early = _first_failure([unclamped.step() for _ in range(60)], model.params.is_ev)
    assert early is not None and early.data_days < WARMUP_DATA_DAYS  # the case is real


def test_no_vehicle_of_a_fleet_fails_before_30_days_of_data() -> None:
    for spec in make_fleet(60, seed=5, start_ts=START):
        model, states = _states(spec, 200)
        first = _first_failure(states, model.params.is_ev)
        if first is not None:
            assert first.data_days >= WARMUP_DATA_DAYS, spec.vehicle_id


def test_the_bms_soh_is_an_estimate_that_wanders_and_jumps_at_recalibrations() -> None:
    days = [d for d in _days(VehicleSpec("E1", "ev", "central", seed=31,
                                         usage="high_mileage"), 365) if d.readings]
    errors = [d.readings.soh - d.state.usable_soh for d in days if d.readings]
    assert statistics.pstdev(errors) > 0.5  # not the truth plus a little noise
    assert max(abs(e) for e in errors) < 6.0  # a few points at most
    jumps = [(a, b) for a, b in pairwise(days) if b.state.day == a.state.day + 1
             and a.readings and b.readings
             and abs(b.readings.soh - a.readings.soh) > 1.0
             and abs(b.state.usable_soh - a.state.usable_soh) < 0.3]
    assert len(jumps) >= 2  # recalibrations every one to three months


def test_failure_is_the_true_permanent_soh_not_what_the_bms_shows() -> None:
    spec = VehicleSpec("E2", "ev", "south", seed=32, battery_soh=74.0)
    sim = VehicleSimulator(spec, load_reference_dbc(), start_ts=START, days=300)
    truth = next(c for c in sim.truth("t").components if c.component == "traction_battery")
    assert truth.failure_ts is not None
    days = list(sim.iter_readings())
    failed = next(d for d in days if d.state.soh < SOH_FAILED or d.state.broken)
    assert sim.snapshot_start(failed.state.day) == truth.failure_ts
    assert all(d.state.soh >= SOH_FAILED for d in days[:failed.state.day])


def test_a_rest_lends_capacity_back_and_driving_fades_it_again() -> None:
    _, states = _states(VehicleSpec("E3", "ev", "north", seed=33, usage="occasional"), 300)
    lent = [s.usable_soh - s.soh for s in states]
    after_rest = [i for i in range(3, len(states)) if all(s.parked for s in states[i - 3:i])
                  and not states[i].parked]
    assert after_rest
    assert all(lent[i] > 0.9 for i in after_rest)  # three parked days lend about a point
    assert lent[after_rest[0] - 4] < lent[after_rest[0]]  # a jump up after the rest
    driven = [i for i in range(6, len(states)) if not any(s.parked for s in states[i - 6:i])]
    assert driven and all(lent[i] < 0.3 for i in driven)  # and it fades back


def test_pad_wear_is_a_sensor_of_coarse_stages() -> None:
    spec = VehicleSpec("B1", "ice", "central", seed=34, pad_wear=60.0, usage="high_mileage")
    landed = landed_days(spec, start_ts=START, days=200)
    shown = [v for _, signal, v in landed.telemetry if signal in PAD_SIGNALS]
    assert shown and all(v % 10.0 == 0.0 for v in shown)
    assert len(set(shown)) >= 3  # it does step up as the pads wear


def test_the_12v_battery_fails_on_a_cold_morning_start() -> None:
    spec = VehicleSpec("L1", "ice", "north", seed=35, lv_resistance_mohm=10.0,
                       model="Dune ICE", weather=7)
    model, states = _states(spec, 120)
    failure = next(s for s in states if s.failed(False)[1])
    assert not failure.parked  # a start fails, not a parked car
    assert failure.dip_v < DIP_FAILED_V
    before = [s.morning_c for s in states[max(0, failure.day - 30):failure.day]]
    assert failure.morning_c < statistics.fmean(before)  # colder than the month before it
    # the same battery on the previous month's mean morning would still have started
    assert crank_dip_v(failure.r_mohm, statistics.fmean(before),
                       model.params.model.crank_amps) > DIP_FAILED_V
    codes = [d for d in _days(spec, failure.day) if any(
        c["DtcCode"] == 0x0562 for c in d.codes)]
    assert codes, f"P0562 (dip below {P0562_DIP_V} V) should come first"


def test_parked_days_drain_the_12v_battery_a_drive_recharges_it() -> None:
    spec = VehicleSpec("L2", "ev", "central", seed=36, usage="occasional")
    model, states = _states(spec, 200)
    amps = model.params.model.crank_amps
    for prev, today in pairwise(states):
        full = crank_dip_v(today.r_mohm, today.morning_c, amps)
        if prev.parked:
            assert today.dip_v < full - 0.03
        else:
            assert today.dip_v == pytest.approx(full)


@pytest.mark.parametrize(("usage", "low", "high"), [
    ("high_mileage", 0.85, 0.99), ("commuter", 0.7, 0.9), ("occasional", 0.3, 0.6)])
def test_days_with_no_data_come_from_parking_and_gateway_outages_by_usage(
        usage: str, low: float, high: float) -> None:
    reported = offline = total = 0
    for seed in range(10):
        _, states = _states(VehicleSpec(f"U{seed}", "ice", "central", seed=100 + seed,
                                        usage=usage), 365)
        reported += sum(s.reports for s in states)
        offline += sum(s.offline and not s.parked for s in states)
        total += len(states)
        for s in states:
            if s.parked:
                assert s.km == 0.0
        for a, b in pairwise(states):
            if a.offline and not a.parked:
                assert b.odometer_km > a.odometer_km  # offline cars still drive
    assert low <= reported / total <= high
    assert offline > 0


def test_no_data_days_leave_no_rows_and_frames_on_the_bus() -> None:
    spec = VehicleSpec("U9", "ice", "central", seed=40, usage="occasional")
    sim = VehicleSimulator(spec, load_reference_dbc(), start_ts=START, days=30)
    silent = {d.state.day for d in sim.iter_readings() if not d.state.reports}
    assert silent
    assert all(not frames for day, frames in enumerate(sim.iter_days()) if day in silent)
    landed = landed_days(spec, start_ts=START, days=30)
    assert not {int((ts - START) // 86_400) for ts, _, _ in landed.telemetry} & silent


@pytest.fixture(scope="module")
def two_years() -> list[tuple[VehicleSpec, HealthModel]]:
    """Two 300-vehicle fleets' hidden lives over two years (no frames): one seed's share of
    sudden failures moves by a point or two, so the figure is pooled."""
    lives = []
    for spec in make_fleet(300, seed=0, start_ts=START) + make_fleet(300, seed=1,
                                                                     start_ts=START):
        model = HealthModel(params_of(spec), spec.seed, START)
        for _ in range(730):
            model.step()
        lives.append((spec, model))
    return lives


def test_about_a_tenth_of_failures_are_sudden(
        two_years: list[tuple[VehicleSpec, HealthModel]]) -> None:
    failures = sum(1 for _, m in two_years for o in m.orders
                   if o.kind in ("unscheduled", "roadside"))
    sudden = sum(len(m.sudden) for _, m in two_years)
    assert failures > 400
    assert 0.08 <= sudden / failures <= 0.12
    assert {c for _, m in two_years for _, c in m.sudden} == {
        "traction_battery", "lv_battery", "brakes"}


def _healthy(state: DayState, component: str) -> bool:
    """Far from the part's wear threshold: nothing in its health signals points at it."""
    if component == "traction_battery":
        return state.soh > 80.0
    if component == "brakes":
        return state.max_pad_wear < 75.0
    return state.dip_v > 10.8


def test_a_sudden_failure_is_in_the_truth_and_the_orders_and_nothing_announces_it(
        two_years: list[tuple[VehicleSpec, HealthModel]]) -> None:
    codes = {"traction_battery": 0x0A80, "lv_battery": 0x0562, "brakes": 0x5B00}
    db = load_reference_dbc()
    checked = 0
    for spec, model in two_years:
        for day, component in model.sudden:
            if day > 400 or checked >= 6:
                continue
            orders = [o for o in vehicle_orders(spec, start_ts=START, days=day + 6)
                      if o.component == component and o.kind in ("unscheduled", "roadside")]
            assert any(day <= o.day <= day + 5 for o in orders), (spec.vehicle_id, component)
            sim = VehicleSimulator(spec, db, start_ts=START, days=day + 1)
            days = list(sim.iter_readings())
            if not _healthy(days[-1].state, component):
                continue  # it was wearing out as well: its code may be up already
            truth = next(c for c in sim.truth("t").components if c.component == component)
            assert truth.failure_ts is not None
            assert truth.failure_ts <= sim.snapshot_start(day)
            assert days[-1].state.failed(sim.params.is_ev)[
                ("traction_battery", "lv_battery", "brakes").index(component)]
            assert not any(c["DtcCode"] == codes[component] for d in days[-31:]
                           for c in d.codes), (spec.vehicle_id, component)
            checked += 1
    assert checked >= 3


def test_vehicles_differ_by_model_region_and_usage(tmp_path: Path) -> None:
    fleet = make_fleet(200, seed=8, start_ts=START)
    assert {s.model for s in fleet} == set(MODELS)
    assert {s.usage for s in fleet} == {"commuter", "high_mileage", "urban", "occasional"}
    assert {s.region for s in fleet} == {"north", "central", "south"}
    files = write_master_data(tmp_path, vehicles_of(fleet), seed=8, start=dt.date(2026, 1, 1))
    listed = Counter(line.split(",")[2] for line in
                     files["vehicles"].read_text(encoding="utf-8").splitlines()[1:])
    assert set(listed) == set(MODELS)


def test_models_have_their_own_constants() -> None:
    def pads_after(model: str) -> float:
        _, states = _states(VehicleSpec("M", "ice", "central", seed=50, pad_wear=10.0,
                                        model=model), 200)
        return states[-1].max_pad_wear

    def soh_after(model: str) -> float:
        _, states = _states(VehicleSpec("M", "ev", "central", seed=51, battery_soh=95.0,
                                        model=model, usage="high_mileage"), 200)
        return states[-1].soh

    assert pads_after("Dune ICE") > pads_after("Borealis ICE") + 2.0  # a heavy SUV
    assert soh_after("Cirrus EV") < soh_after("Aurora EV") - 0.5  # a small, hard-cycled pack
    with pytest.raises(ValueError, match="not an ICE"):
        params_of(VehicleSpec("M", "ice", "central", seed=1, model="Aurora EV"))
    with pytest.raises(ValueError, match="usage"):
        params_of(VehicleSpec("M", "ice", "central", seed=1, usage="taxi"))

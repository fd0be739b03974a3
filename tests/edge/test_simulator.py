"""The fleet simulator: deterministic, decodable frames that carry a hidden state, and truth."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import can
import pytest
from cantools.database.can import Database

from edge.sim.faults import dtc_code_to_raw, dtc_raw_to_code
from edge.sim.simulator import (
    VehicleSimulator,
    VehicleSpec,
    load_reference_dbc,
    make_fleet,
    params_of,
)
from edge.sim.wear import HealthModel
from edge.wire.contract import TruthRecord

START_TS = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
DAY_S = 86_400.0
DTC_ID = 0x3F0


def _signals(decoded: object) -> dict[str, Any]:
    """cantools' result for a plain (non-container) message: signal name to value."""
    assert isinstance(decoded, dict)
    return decoded


@pytest.fixture(scope="module")
def db() -> Database:
    return load_reference_dbc()


def _run(spec: VehicleSpec, db: Database, days: int) -> tuple[list[list[can.Message]], TruthRecord]:
    sim = VehicleSimulator(spec, db, start_ts=START_TS, days=days)
    frames = list(sim.iter_days())
    return frames, sim.truth(f"truth-{spec.vehicle_id}")


def _fingerprint(days: list[list[can.Message]]) -> list[tuple[float, int, bytes]]:
    return [(f.timestamp, f.arbitration_id, bytes(f.data)) for day in days for f in day]


def _failure(truth: TruthRecord, component: str) -> float | None:
    return next(c.failure_ts for c in truth.components if c.component == component)


def _dtc_frames(db: Database, days: list[list[can.Message]]) -> list[tuple[float, str, int]]:
    message = db.get_message_by_frame_id(DTC_ID)
    found = []
    for frame in (f for day in days for f in day if f.arbitration_id == DTC_ID):
        values = _signals(message.decode(bytes(frame.data), decode_choices=False))
        found.append((frame.timestamp, dtc_raw_to_code(int(values["DtcCode"])),
                      int(values["DtcStatus"])))
    return found


def test_same_spec_and_seed_give_identical_frames_and_truth(db: Database) -> None:
    spec = VehicleSpec("VIN1", "ev", "north", seed=42)
    frames_a, truth_a = _run(spec, db, days=5)
    frames_b, truth_b = _run(spec, db, days=5)
    assert _fingerprint(frames_a) == _fingerprint(frames_b)
    assert truth_a == truth_b


def test_iterating_twice_replays_the_same_life(db: Database) -> None:
    sim = VehicleSimulator(VehicleSpec("VIN1", "ice", "south", seed=3), db,
                           start_ts=START_TS, days=3)
    assert _fingerprint(list(sim.iter_days())) == _fingerprint(list(sim.iter_days()))


def test_different_seeds_differ(db: Database) -> None:
    frames_a, truth_a = _run(VehicleSpec("VIN1", "ev", "north", seed=1), db, days=3)
    frames_b, truth_b = _run(VehicleSpec("VIN1", "ev", "north", seed=2), db, days=3)
    assert _fingerprint(frames_a) != _fingerprint(frames_b)
    assert truth_a.components != truth_b.components


def test_worn_traction_battery_fails_soon_and_raises_p0a80_first(db: Database) -> None:
    days = 30
    frames, truth = _run(VehicleSpec("VIN1", "ev", "central", seed=7, battery_soh=71.0), db, days)
    failure = _failure(truth, "traction_battery")
    assert failure is not None
    assert failure <= truth.sim_end_ts + 60 * DAY_S
    p0a80 = [ts for ts, code, _ in _dtc_frames(db, frames) if code == "P0A80"]
    assert p0a80
    assert min(p0a80) < failure


def test_worn_pads_fail_brakes_soon_and_raise_c1b00(db: Database) -> None:
    spec = VehicleSpec("VIN2", "ice", "central", seed=10, pad_wear=95.0, km_per_day=60.0)
    frames, truth = _run(spec, db, days=30)
    failure = _failure(truth, "brakes")
    assert failure is not None
    assert failure <= truth.sim_end_ts + 60 * DAY_S
    codes = _dtc_frames(db, frames)
    assert min(ts for ts, code, _ in codes if code == "C1B00") < failure


def test_weak_12v_battery_fails_on_a_winter_morning_and_raises_p0562(db: Database) -> None:
    spec = VehicleSpec("VIN3", "ice", "north", seed=9, lv_resistance_mohm=8.5)
    frames, truth = _run(spec, db, days=60)
    failure = _failure(truth, "lv_battery")
    assert failure is not None
    assert failure <= truth.sim_end_ts
    assert min(ts for ts, code, _ in _dtc_frames(db, frames) if code == "P0562") < failure


def test_fault_codes_are_pending_first_and_stored_after_three_days(db: Database) -> None:
    frames, _ = _run(VehicleSpec("VIN1", "ev", "central", seed=7, battery_soh=71.0), db, days=10)
    statuses = [(ts, status) for ts, code, status in _dtc_frames(db, frames) if code == "P0A80"]
    first_ts = statuses[0][0]
    for ts, status in statuses:
        assert status == (1 if ts - first_ts >= 3 * DAY_S - 1 else 0)
    assert {status for _, status in statuses} == {0, 1}


def test_healthy_vehicle_neither_fails_nor_reports_faults(db: Database) -> None:
    spec = VehicleSpec("VIN4", "ev", "south", seed=10, battery_soh=99.0, pad_wear=5.0,
                       lv_resistance_mohm=4.5)
    frames, truth = _run(spec, db, days=60)
    for component in truth.components:
        assert component.failure_ts is None or component.failure_ts > truth.sim_end_ts
    assert _dtc_frames(db, frames) == []


def test_truth_lists_the_components_of_the_variant(db: Database) -> None:
    _, ev = _run(VehicleSpec("VIN5", "ev", "north", seed=11), db, days=2)
    _, ice = _run(VehicleSpec("VIN6", "ice", "north", seed=12), db, days=2)
    assert [c.component for c in ev.components] == ["traction_battery", "lv_battery", "brakes"]
    assert [c.component for c in ice.components] == ["lv_battery", "brakes"]
    assert (ev.model, ice.model) == ("Aurora EV", "Borealis ICE")
    assert ev.sim_end_ts - ev.sim_start_ts == 2 * DAY_S


def test_frames_decode_and_carry_the_hidden_state(db: Database) -> None:
    spec = VehicleSpec("VIN7", "ev", "south", seed=13, battery_soh=80.0)
    days = 20
    frames, _ = _run(spec, db, days)
    model = HealthModel(params_of(spec), spec.seed, START_TS)
    odometer = 0.0
    for day in frames:
        state = model.step()
        for frame in day:
            values = _signals(db.decode_message(frame.arbitration_id, bytes(frame.data),
                                                 decode_choices=False))
            if "StateOfHealth" in values:  # the BMS's estimate: a few points off at most
                assert values["StateOfHealth"] == pytest.approx(state.soh, abs=5.0)
            if "Odometer" in values:
                assert values["Odometer"] >= odometer
                odometer = float(values["Odometer"])
            if "PadWear_FL" in values:  # a sensor of 10 % stages, switching ±2 % off
                shown = max(values[f"PadWear_{w}"] for w in ("FL", "FR", "RL", "RR"))
                assert state.max_pad_wear - 12.0 < shown <= state.max_pad_wear + 2.0
    assert odometer > model.params.km_per_day  # the odometer moved over 20 days


def test_cell_voltage_spread_grows_as_the_battery_ages(db: Database) -> None:
    def spread(soh: float) -> float:
        frames, _ = _run(VehicleSpec("VIN8", "ev", "central", seed=14, battery_soh=soh), db, 1)
        summary = db.get_message_by_name("BMS_CellSummary")
        values = [_signals(summary.decode(bytes(f.data))) for f in frames[0]
                  if f.arbitration_id == 0x113]
        return sum(float(v["MaxCellVoltage"]) - float(v["MinCellVoltage"]) for v in values)

    assert spread(75.0) > 2 * spread(98.0)


@pytest.mark.parametrize(("variant", "per_day"), [("ev", 103), ("ice", 172)])
def test_timestamps_follow_cycle_times(db: Database, variant: str, per_day: int) -> None:
    days = 3
    sim = VehicleSimulator(VehicleSpec("VIN9", variant, "central", seed=15), db,
                           start_ts=START_TS, days=days)
    sent = 0
    for day, frames in enumerate(sim.iter_days()):
        if not frames:
            continue  # parked, or the gateway offline: nothing on the bus
        sent += 1
        assert len(frames) == per_day
        stamps = [f.timestamp for f in frames]
        assert stamps == sorted(stamps)
        assert START_TS + day * DAY_S + 8 * 3600 <= stamps[0] < START_TS + day * DAY_S + 9 * 3600
        by_id: dict[int, list[float]] = defaultdict(list)
        for frame in frames:
            by_id[frame.arbitration_id].append(frame.timestamp)
        for frame_id, times in by_id.items():
            cycle_ms = db.get_message_by_frame_id(frame_id).cycle_time
            assert cycle_ms is not None, frame_id
            cycle_s = cycle_ms / 1000.0
            gaps = [b - a for a, b in pairwise(times)]
            assert all(gap == pytest.approx(cycle_s, abs=1e-5) for gap in gaps), frame_id
        names = {db.get_message_by_frame_id(i).name for i in by_id}
        assert ("ECM_Engine" in names) == (variant == "ice")
        assert any(n.startswith("BMS_") for n in names) == (variant == "ev")
    assert sent


def test_multiplexed_cell_groups_rotate(db: Database) -> None:
    frames, _ = _run(VehicleSpec("VIN10", "ev", "north", seed=16), db, days=1)
    message = db.get_message_by_name("BMS_CellVoltages")
    groups = [int(_signals(message.decode(bytes(f.data)))["CellGroup"]) for f in frames[0]
              if f.arbitration_id == message.frame_id]
    assert groups == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_dtc_codes_convert_like_obd_answers() -> None:
    assert dtc_code_to_raw("P0A80") == 0x0A80
    assert dtc_code_to_raw("C1B00") == 0x5B00
    assert dtc_code_to_raw("U0100") == 0xC100
    for code in ("P0A80", "P0562", "C1B00", "B1234", "U3FFF"):
        assert dtc_raw_to_code(dtc_code_to_raw(code)) == code
    with pytest.raises(ValueError, match="J2012"):
        dtc_code_to_raw("p0a80")


def test_unknown_variant_or_region_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="variant"):
        VehicleSimulator(VehicleSpec("V", "hybrid", "north", 1), db, start_ts=START_TS, days=1)
    with pytest.raises(ValueError, match="region"):
        VehicleSimulator(VehicleSpec("V", "ev", "mars", 1), db, start_ts=START_TS, days=1)


@pytest.mark.parametrize("start", ["2026-01-01", "2026-07-01"])
@pytest.mark.parametrize("with_start_ts", [True, False])
def test_make_fleet_mixes_variants_and_fails_a_share(
        db: Database, start: str, with_start_ts: bool) -> None:
    start_ts = datetime.fromisoformat(f"{start}T00:00:00+00:00").timestamp()
    fleet = make_fleet(40, seed=0, start_ts=start_ts if with_start_ts else None)
    assert len({spec.vehicle_id for spec in fleet}) == 40
    assert 20 <= sum(spec.variant == "ev" for spec in fleet) <= 28
    assert {spec.region for spec in fleet} == {"north", "central", "south"}
    failing = 0
    for spec in fleet:
        truth = VehicleSimulator(spec, db, start_ts=start_ts, days=150).truth("t")
        horizon = truth.sim_end_ts + 30 * DAY_S
        failing += any(c.failure_ts is not None and c.failure_ts <= horizon
                       for c in truth.components)
    assert 0.25 <= failing / len(fleet) <= 0.40


def test_make_fleet_is_deterministic() -> None:
    assert make_fleet(10, seed=5) == make_fleet(10, seed=5)
    assert make_fleet(10, seed=5) != make_fleet(10, seed=6)
    assert make_fleet(3, seed=1, prefix="CAR")[0].vehicle_id.startswith("CAR")


def test_frames_keep_simulated_time_across_a_virtual_bus(db: Database) -> None:
    sim = VehicleSimulator(VehicleSpec("VIN11", "ice", "north", seed=17), db,
                           start_ts=START_TS, days=1)
    frames = next(sim.iter_days())
    channel = "fleetcare-test-simulator-timestamps"
    with can.Bus(interface="virtual", channel=channel, preserve_timestamps=True) as sender, \
            can.Bus(interface="virtual", channel=channel) as receiver:
        for frame in frames[:20]:
            sender.send(frame)
        received = [receiver.recv(timeout=1.0) for _ in range(20)]
    assert [(m.timestamp, m.arbitration_id, bytes(m.data)) for m in received if m] == [
        (f.timestamp, f.arbitration_id, bytes(f.data)) for f in frames[:20]]

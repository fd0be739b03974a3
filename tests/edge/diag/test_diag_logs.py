"""The taps on real recordings: OBD-II PIDs, J1939 transport, Nissan Leaf UDS battery data.

The logs are python-can ``CanutilsLogWriter`` output with a trailing `` R``/`` T`` after the
data, which ``can.LogReader`` reads like plain ``candump -l`` lines (asserted by frame counts).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import can
import pytest
from diag_helpers import J1939_LOG, LEAF_LOG, OBD_LOG, make_agent, samples, spooled

from edge.diag.j1939_tap import J1939Tap
from edge.diag.obd_tap import ObdTap
from edge.diag.taps import make_taps
from edge.diag.uds_tap import UdsTap
from edge.tap import FrameTap

pytestmark = pytest.mark.skipif(not OBD_LOG.exists(), reason="../shared/data is not present")


def _by_signal(taps: Sequence[FrameTap], log: Path) -> dict[str, list[float]]:
    values: dict[str, list[float]] = defaultdict(list)
    for frame in can.LogReader(str(log)):
        for tap in taps:
            found = tap.feed(frame)
            if found is not None:
                for _, name, value in found.samples:
                    values[name].append(value)
    return values


def test_logs_with_trailing_direction_flag_read_completely() -> None:
    assert sum(1 for _ in can.LogReader(str(OBD_LOG))) == 73785
    assert sum(1 for _ in can.LogReader(str(J1939_LOG))) == 1815
    assert sum(1 for _ in can.LogReader(str(LEAF_LOG))) == 5588


def test_every_obd_answer_in_the_car_log_decodes() -> None:
    tap = ObdTap()
    values = _by_signal([tap], OBD_LOG)
    responses = sum(1 for f in can.LogReader(str(OBD_LOG)) if f.arbitration_id == 0x7E8)
    assert tap.counters.answers == responses == 7267
    assert tap.counters.parse_errors == tap.reassembly.counters.malformed == 0
    assert tap.counters.unknown_pids == {}
    rpm = values["Vehicle.Powertrain.CombustionEngine.Speed"]
    speed = values["Vehicle.Speed"]
    assert len(rpm) == 1204 and 500 < max(rpm) < 7000 and min(rpm) >= 0
    assert len(speed) == 1203 and min(speed) >= 0 and max(speed) < 200
    assert all(-40 <= v < 130 for v in values["Vehicle.Powertrain.CombustionEngine.ECT"])
    assert all(9 < v < 16 for v in values["Vehicle.LowVoltageBattery.CurrentVoltage"])
    assert "OBD.ACTUAL_ENGINE_TORQUE" in values and "OBD.INTAKE_PRESSURE" in values


def test_j1939_log_reassembles_every_bam_transfer_and_its_vin() -> None:
    tap = J1939Tap()
    _by_signal([tap], J1939_LOG)
    # 13 transfers of PGN 0xFEE3 (engine configuration) and 3 of 0xFEEC (VIN); no DM1.
    assert tap.counters.transfers_by_pgn == {0xFEE3: 13, 0xFEEC: 3}
    assert tap.counters.broken_transfers == 0
    assert tap.vin == "1L06130RELP969468"
    assert tap.counters.dm1 == 0


def test_leaf_log_battery_data_through_the_nissan_map() -> None:
    tap, = make_taps(["uds:nissan_leaf"])
    assert isinstance(tap, UdsTap)
    values = _by_signal([tap], LEAF_LOG)
    assert tap.counters.answers == 26 and tap.counters.parse_errors == 0
    soc = values["Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"]
    assert len(soc) == 13 and soc[0] == pytest.approx(89.2286)
    assert all(80 < v < 95 for v in soc) and soc[-1] < soc[0]   # driving: SoC falls
    volts = values["Vehicle.Powertrain.TractionBattery.CurrentVoltage"]
    assert all(350 < v < 404 for v in volts)                     # 96 cells, 3.6-4.2 V
    assert values["UDS.NissanLeaf.PackTemperature1"][0] == 2.0   # a January morning
    assert "UDS.NissanLeaf.PackTemperature3" not in values       # sensor absent (0xFF)


def test_replaying_the_obd_log_through_an_agent_spools_the_pid_values(tmp_path: Path) -> None:
    bus = can.Bus(interface="virtual", channel="unused-diag-log", receive_own_messages=False)
    try:
        agent, spool = make_agent(bus, tmp_path / "spool", make_taps(["obd", "j1939", "uds"]))
        frames = list(can.LogReader(str(OBD_LOG)))[:5000]
        for frame in frames:
            agent.process(frame)
        agent.flush()
    finally:
        bus.shutdown()
    landed = samples(spooled(spool))
    obd_ts = {round(f.timestamp, 6) for f in frames if f.arbitration_id == 0x7E8}
    speed = [(ts, v) for ts, name, v in landed if name == "Vehicle.Speed"]
    assert speed and all(round(ts, 6) in obd_ts for ts, _ in speed)
    assert agent.stats().frames_read == len(frames)

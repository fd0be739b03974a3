"""``edge run`` with a profile that says ``poll`` asks the car itself, on the agent's channel.

A simulated engine ECU (edge.sim.ecus) answers OBD-II over ISO-TP on a python-can virtual
bus; the agent runs as ``fleetcare edge run`` assembles it with the shipped OBD-II profile,
into a real ingest on a real broker. Nothing but the agent asks, so every value, fault code
and the VIN in the store came from its own requests, heard by its obd tap.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from diag_helpers import channel

from edge.config import load_edge_settings
from edge.errors import ConfigError
from edge.runtime import assemble, run
from edge.sim.ecus import EcuBehaviour, SimulatedEcu
from edge.sim.vins import simulated_vin
from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store
from tests.polling import wait_until

VIN = simulated_vin(5, "POLLCAR")
FIRST_POLL = 8
"""Answers to the first poll: PID bitmaps 0x00, 0x20, 0x40, the VIN, one request for the
supported PIDs, and modes 03, 07, 0A."""


@pytest.mark.broker
def test_the_obd_profile_polls_the_car_and_publishes_the_answers(
        broker_url: str, tmp_path: Path, db_path: Path) -> None:
    name, vehicle = channel(), f"OBD-{uuid.uuid4().hex[:6]}"
    ecu = SimulatedEcu(name, EcuBehaviour(
        pids={0x0C: (800 * 4).to_bytes(2, "big"), 0x0D: b"\x32",
              0x42: (13_900).to_bytes(2, "big")},
        dtcs={0x03: [0x0562]}, vin=VIN))
    settings = load_edge_settings(vehicle_id=vehicle, interface="virtual", channel=name,
                                  broker_url=broker_url, spool_dir=tmp_path / "spool",
                                  profile="obd2_generic")
    ingestor = Ingestor(broker_url, db_path, client_id=f"poll-ingest-{vehicle}",
                        require_registered_vehicles=False, rate_limit=None,
                        flush_interval_s=0.05).start()
    stop = threading.Event()
    result: list[tuple[object, dict[str, float], bool]] = []
    runner = threading.Thread(target=lambda: result.append(run(settings, stop)))
    runner.start()
    try:
        assert wait_until(lambda: ecu.answered > FIRST_POLL, timeout=120), ecu.answered
    finally:
        stop.set()
        runner.join(timeout=60)
        ingestor.stop()
        ecu.stop()
    _, counters, drained = result[0]
    assert drained and counters["obd_polls"] >= 2
    with store.connect_readonly(db_path) as con:
        values = dict(con.execute(
            "SELECT signal, max(value) FROM telemetry WHERE vehicle_id = ? GROUP BY signal",
            [vehicle]).fetchall())
        codes = con.execute("SELECT code, status FROM dtc_events WHERE vehicle_id = ?",
                            [vehicle]).fetchall()
        vins = con.execute("SELECT vin FROM vehicle_info WHERE vehicle_id = ? AND vin IS NOT"
                           " NULL", [vehicle]).fetchall()
    assert values["Vehicle.LowVoltageBattery.CurrentVoltage"] == pytest.approx(13.9)
    assert values["Vehicle.Powertrain.CombustionEngine.Speed"] == pytest.approx(800.0)
    assert values["Vehicle.Speed"] == pytest.approx(50.0)
    assert ("P0562", "stored") in codes
    assert vins == [(VIN,)]


def test_polling_without_the_obd_tap_is_refused_before_anything_opens(tmp_path: Path) -> None:
    settings = load_edge_settings(vehicle_id="V", interface="virtual", channel=channel(),
                                  spool_dir=tmp_path / "spool", profile="obd2_generic",
                                  taps=[])
    with pytest.raises(ConfigError, match="obd tap is off"):
        assemble(settings)
    assert not (tmp_path / "spool").exists()


def test_a_replay_only_listens(tmp_path: Path) -> None:
    log = tmp_path / "car.log"
    log.write_text("(1.0) can0 7E8#0341058500000000\n")
    parts = assemble(load_edge_settings(vehicle_id="V", interface="replay", channel=str(log),
                                        spool_dir=tmp_path / "spool", profile="obd2_generic"))
    try:
        assert parts.poller is None
    finally:
        parts.source.shutdown()
        parts.spool.close()


@pytest.mark.parametrize(("poll", "why"), [
    ("{ pids = [0x1FF] }", "mode 01 PIDs"),
    ("{ pids = [0x42], every_s = 0 }", "seconds > 0"),
    ("{ pids = [0x42], often = true }", "keys: dtc_every_s, every_s, pids"),
])
def test_a_bad_poll_table_is_one_line_saying_what_to_fix(tmp_path: Path, poll: str,
                                                        why: str) -> None:
    from edge.profiles import load_profile

    path = tmp_path / "car.toml"
    path.write_text(f'models = ["X"]\ntaps = ["obd"]\npoll = {poll}\n')
    with pytest.raises(ConfigError, match=why):
        load_profile(path)
    path.write_text('models = ["X"]\npoll = { pids = [0x42] }\n')
    with pytest.raises(ConfigError, match="needs the obd tap"):
        load_profile(path)

"""Cranking detection on the reference DBC's signals, through the agent."""

from __future__ import annotations

from pathlib import Path

import can
import cantools
import pytest

from edge.agent import Agent
from edge.config import REFERENCE_DBC
from edge.cranking import CrankDetector, CrankRule
from edge.decode import Decoder, load_dbcs
from edge.rules import load_rules
from edge.spool import Spool
from edge.wire import contract

RULE = CrankRule("BCM_LowVoltage.LvBatteryVoltage", "ECM_Engine.EngineSpeed")


Trace = list[tuple[float, float, float]]


def _drive(detector: CrankDetector, trace: Trace) -> list[dict[str, float]]:
    """Feed (ts, volts, rpm) triples; return each event as {name: value}."""
    events = []
    for ts, volts, rpm in trace:
        detector.on_voltage(ts, volts)
        out = detector.on_speed(ts, rpm)
        if out:
            events.append({name.rsplit(".", 1)[1]: value for _, name, value in out})
    return events


def _start(t0: float, rest: float, dip: float, *, starts: bool = True) -> Trace:
    trace = [(t0 + i * 0.1, rest, 0.0) for i in range(20)]  # 2 s parked, key on
    trace += [(t0 + 2.0 + i * 0.1, dip + 0.1 * abs(i - 3), 150.0) for i in range(6)]
    trace += [(t0 + 2.6 + i * 0.1, 14.2, 800.0 if starts else 0.0) for i in range(5)]
    return trace


def test_a_start_is_one_event_with_rest_and_minimum_voltage() -> None:
    events = _drive(CrankDetector(RULE), _start(0.0, 12.6, 9.4))
    assert len(events) == 1
    assert events[0]["RestVoltage"] == 12.6
    assert events[0]["MinVoltage"] == pytest.approx(9.4)
    assert events[0]["Dip"] == pytest.approx(3.2)
    assert events[0]["Started"] == 1.0
    assert events[0]["Duration"] == pytest.approx(0.6)


def test_key_on_engine_off_is_not_a_crank() -> None:
    trace = [(i * 0.1, 12.6 if i < 10 else 12.1, 0.0) for i in range(50)]  # loads on, no rpm
    assert _drive(CrankDetector(RULE), trace) == []


def test_running_engine_is_not_a_crank_but_a_failed_start_is_reported() -> None:
    running = [(i * 0.1, 14.1, 820.0) for i in range(10)]
    detector = CrankDetector(RULE)
    assert _drive(detector, running) == []
    events = _drive(detector, _start(10.0, 12.2, 8.0, starts=False))
    assert [e["Started"] for e in events] == [0.0]


BY_DBC_NAME = ('[cranking]\nvoltage = "BCM_LowVoltage.LvBatteryVoltage"\n'
               'engine_speed = "ECM_Engine.EngineSpeed"\n')
BY_PUBLISHED_NAME = (
    '[[signal]]\ndbc = "BCM_LowVoltage.LvBatteryVoltage"\n'
    'vss = "Vehicle.LowVoltageBattery.CurrentVoltage"\n'
    '[[signal]]\ndbc = "ECM_Engine.EngineSpeed"\n'
    'vss = "Vehicle.Powertrain.CombustionEngine.Speed"\n'
    '[cranking]\nvoltage = "Vehicle.LowVoltageBattery.CurrentVoltage"\n'
    'engine_speed = "Vehicle.Powertrain.CombustionEngine.Speed"\n')


@pytest.mark.parametrize("rules", [BY_DBC_NAME, BY_PUBLISHED_NAME], ids=["dbc", "published"])
def test_agent_spools_crank_event_at_once(tmp_path: Path, rules: str) -> None:
    db: cantools.database.can.Database = load_dbcs([REFERENCE_DBC])[0]
    rules_path = tmp_path / "rules.toml"
    rules_path.write_text(rules)
    spool = Spool(tmp_path / "spool", fsync=False)
    bus = can.Bus(interface="virtual", channel=f"crank-{tmp_path.name}")
    agent = Agent("V1", bus, Decoder([db]), load_rules(rules_path), spool, None)
    bus.shutdown()  # frames are handed to process() directly
    lv, ecm = db.get_message_by_name("BCM_LowVoltage"), db.get_message_by_name("ECM_Engine")
    for ts, volts, rpm in _start(1000.0, 12.5, 9.0):
        agent.process(can.Message(arbitration_id=lv.frame_id, is_extended_id=False, timestamp=ts,
                                  data=lv.encode({"LvBatteryVoltage": volts, "CrankMinVoltage": 0,
                                                  "CrankCount": 0})))
        agent.process(can.Message(arbitration_id=ecm.frame_id, is_extended_id=False, timestamp=ts,
                                  data=ecm.encode({"EngineSpeed": rpm, "CoolantTemp": 20,
                                                   "EngineRunning": int(rpm > 400)})))
    assert agent.stats().crank_events == 1
    # Spooled at once (the batch before it too, so the replay checkpoint stays exact).
    messages = [contract.decode(e.payload) for s in spool.pending() if (e := spool.read(s))]
    events = [m for m in messages if isinstance(m, contract.TelemetryBatch)
              and m.signal[0].startswith("Event.Crank")]
    assert len(events) == 1
    values = dict(zip(events[0].signal, events[0].value, strict=True))
    assert values["Event.Crank.RestVoltage"] == pytest.approx(12.5, abs=0.01)
    assert values["Event.Crank.MinVoltage"] == pytest.approx(9.0, abs=0.01)
    agent.finish()
    messages = [contract.decode(e.payload) for s in spool.pending() if (e := spool.read(s))]
    spooled = sum(len(m.ts) for m in messages if isinstance(m, contract.TelemetryBatch))
    assert agent.stats().signals_spooled == spooled


def _obd_answer(ts: float, pid: int, data: bytes) -> can.Message:
    """An engine ECU's mode 01 answer (0x7E8, ISO-TP single frame)."""
    payload = bytes([len(data) + 2, 0x41, pid, *data]).ljust(8, b"\x00")
    return can.Message(arbitration_id=0x7E8, is_extended_id=False, timestamp=ts, data=payload)


def test_obd_profile_feeds_the_detector_from_pid_answers(tmp_path: Path) -> None:
    """Over OBD-II the voltage (PID 0x42) and engine speed (0x0C) are tap samples, named by
    their VSS paths: the shipped OBD-II profile's [cranking] watches those names."""
    from edge.diag.taps import make_taps
    from edge.profiles import find_profile, resolve

    profile = resolve(find_profile("obd2_generic"))
    assert profile.rules.cranking is not None
    assert profile.rules.cranking.voltage == "Vehicle.LowVoltageBattery.CurrentVoltage"
    spool = Spool(tmp_path / "spool", fsync=False)
    bus = can.Bus(interface="virtual", channel=f"crank-obd-{tmp_path.name}")
    agent = Agent("CAR-1", bus, Decoder([]), profile.rules, spool, None,
                  taps=make_taps(list(profile.profile.taps)))
    bus.shutdown()
    for ts, volts, rpm in _start(500.0, 12.4, 9.6):
        agent.process(_obd_answer(ts, 0x42, int(volts * 1000).to_bytes(2, "big")))
        agent.process(_obd_answer(ts, 0x0C, int(rpm * 4).to_bytes(2, "big")))
    agent.finish()
    assert agent.stats().crank_events == 1
    messages = [contract.decode(e.payload) for s in spool.pending() if (e := spool.read(s))]
    values = {name: value for m in messages if isinstance(m, contract.TelemetryBatch)
              for name, value in zip(m.signal, m.value, strict=True)}
    assert values["Event.Crank.RestVoltage"] == pytest.approx(12.4, abs=0.01)
    assert values["Event.Crank.MinVoltage"] == pytest.approx(9.6, abs=0.01)
    assert values["Vehicle.LowVoltageBattery.CurrentVoltage"] == pytest.approx(14.2, abs=0.01)


def test_a_cranking_name_nothing_can_publish_is_refused(tmp_path: Path) -> None:
    from edge.errors import ConfigError
    from edge.profiles import load_profile, resolve

    path = tmp_path / "car.toml"
    path.write_text('models = ["X"]\ndbc = ["fleetcare_ref.dbc"]\n[cranking]\n'
                    'voltage = "Vehicle.LowVoltageBattery.CurrentVoltage"\n'
                    'engine_speed = "ECM_Engine.EngineSpeed"\n')
    with pytest.raises(ConfigError, match=r"watches Vehicle\.LowVoltageBattery\.CurrentVoltage"):
        resolve(load_profile(path))
    path.write_text(path.read_text().replace(
        "[cranking]", '[[signal]]\ndbc = "BCM_LowVoltage.LvBatteryVoltage"\n'
        'vss = "Vehicle.LowVoltageBattery.CurrentVoltage"\n[cranking]'))
    assert resolve(load_profile(path)).rules.crank_messages() == {
        "BCM_LowVoltage", "ECM_Engine"}

"""The agent's vehicle info: spooled at its start, and at once when a tap reads a new VIN."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import can
import pytest

from edge.agent import Agent
from edge.config import REFERENCE_DBC, REFERENCE_RULES
from edge.decode import Decoder, load_dbcs
from edge.diag.taps import make_taps
from edge.identity import AgentIdentity, agent_version, identity_of
from edge.rules import load_rules
from edge.sim.vins import simulated_vin, vin_exchange
from edge.source import FrameReader, open_source
from edge.spool import Spool
from edge.wire import contract
from edge.wire.vin import has_valid_check_digit
from tests.edge.diag.diag_helpers import J1939_LOG, OBD_LOG, spooled

TRUCK_VIN = "1L06130RELP969468"


def _agent(tmp_path: Path, bus: FrameReader, taps: list[str], *,
           identity: AgentIdentity | None) -> tuple[Agent, Spool]:
    spool = Spool(tmp_path / "spool")
    holder: list[Agent] = []
    agent = Agent("V1", bus, Decoder(load_dbcs([REFERENCE_DBC])), load_rules(REFERENCE_RULES),
                  spool, None, taps=make_taps(taps, on_vin=lambda v, s: holder[0].report_vin(v, s)),
                  identity=identity)
    holder.append(agent)
    return agent, spool


def _infos(spool: Spool) -> list[contract.VehicleInfo]:
    return [m for m in spooled(spool) if isinstance(m, contract.VehicleInfo)]


def _replay(agent: Agent, log: Path) -> list[float]:
    times = []
    for frame in can.LogReader(str(log)):
        times.append(frame.timestamp)
        agent.process(frame)
    agent.flush()
    return times


@pytest.fixture
def bus() -> can.BusABC:
    return can.Bus(interface="virtual", channel=f"vinfo-{time.monotonic_ns()}")


def test_identity_fingerprints_the_files_it_decodes_with() -> None:
    identity = identity_of([REFERENCE_DBC], REFERENCE_RULES)
    assert identity.dbc_fingerprints == {
        REFERENCE_DBC.name: hashlib.sha256(REFERENCE_DBC.read_bytes()).hexdigest()}
    assert identity.rules_fingerprint == hashlib.sha256(REFERENCE_RULES.read_bytes()).hexdigest()
    assert identity.agent_version == agent_version() != "unknown"


def test_the_truck_logs_vin_is_spooled_once_after_the_start_report(
        tmp_path: Path, bus: can.BusABC) -> None:
    identity = identity_of([REFERENCE_DBC], REFERENCE_RULES)
    agent, spool = _agent(tmp_path, bus, ["obd", "j1939"], identity=identity)
    before = time.time()
    agent.announce()
    times = _replay(agent, J1939_LOG)
    start, read = _infos(spool)  # the log broadcasts the VIN three times: one report
    assert (start.vin, start.vin_source) == (None, "none") and start.ts >= before
    assert (read.vin, read.vin_source) == (TRUCK_VIN, "j1939_feec")
    assert min(times) < read.ts <= max(times)  # stamped with the frame that completed it
    for info in (start, read):
        assert info.dbc_fingerprints == identity.dbc_fingerprints
        assert info.rules_fingerprint == identity.rules_fingerprint
        assert info.agent_version == identity.agent_version
    assert agent.stats().vin == TRUCK_VIN and agent.stats().vin_source == "j1939_feec"
    bus.shutdown()


def test_a_bus_without_a_vin_reports_it_absent(tmp_path: Path, bus: can.BusABC) -> None:
    agent, spool = _agent(tmp_path, bus, ["obd", "j1939"],
                          identity=identity_of([REFERENCE_DBC], None))
    agent.announce(1_700_000_000.0)
    _replay(agent, OBD_LOG)  # 7,267 OBD-II answers, none of them mode 09
    only, = _infos(spool)
    assert (only.vin, only.vin_source, only.ts) == (None, "none", 1_700_000_000.0)
    assert only.rules_fingerprint == ""
    bus.shutdown()


def test_a_changed_vin_is_reported_again_and_a_repeated_one_is_not(
        tmp_path: Path, bus: can.BusABC) -> None:
    agent, spool = _agent(tmp_path, bus, ["obd"], identity=AgentIdentity("9.9.9"))
    first, second = simulated_vin(1, "A"), simulated_vin(1, "B")
    for t0, vin in [(100.0, first), (200.0, first), (300.0, second), (400.0, second)]:
        for frame in vin_exchange(vin, t0):
            agent.process(frame)
    infos = _infos(spool)
    assert [(i.vin, i.vin_source) for i in infos] == [(first, "obd_mode09"),
                                                      (second, "obd_mode09")]
    assert [round(i.ts) for i in infos] == [100, 300]
    assert len({i.msg_id for i in infos}) == 2
    bus.shutdown()


def test_two_ecus_answering_different_vins_are_reported_once_each(
        tmp_path: Path, bus: can.BusABC) -> None:
    agent, spool = _agent(tmp_path, bus, ["obd"], identity=AgentIdentity("9.9.9"))
    car, donor = simulated_vin(2, "car"), simulated_vin(2, "donor ECU")
    for t0 in (100.0, 200.0, 300.0):  # every read hears both answers, in turn
        for vin, offset in ((car, 0.0), (donor, 0.5)):
            for frame in vin_exchange(vin, t0 + offset):
                agent.process(frame)
    assert [(i.vin, round(i.ts, 1)) for i in _infos(spool)] == [(car, 100.0), (donor, 100.5)]
    assert agent.stats().vin == donor  # the last one heard
    bus.shutdown()


def test_an_agent_without_identity_spools_no_vehicle_info(tmp_path: Path,
                                                          bus: can.BusABC) -> None:
    agent, spool = _agent(tmp_path, bus, ["obd"], identity=None)
    agent.announce()
    for frame in vin_exchange(simulated_vin(1, "A"), 100.0):
        agent.process(frame)
    assert _infos(spool) == [] and agent.stats().vin == simulated_vin(1, "A")
    bus.shutdown()


def test_run_reports_the_start_before_reading(tmp_path: Path) -> None:
    source = open_source("replay", str(J1939_LOG))
    agent, spool = _agent(tmp_path, source, ["j1939"], identity=AgentIdentity("1.0"))
    agent.run(threading.Event())
    source.shutdown()
    assert [i.vin for i in _infos(spool)] == [None, TRUCK_VIN]
    first = spooled(spool)[0]  # the spool's oldest entry: the start, before any frame
    assert isinstance(first, contract.VehicleInfo) and first.vin is None


def test_simulated_vins_are_reproducible_and_carry_their_check_digit() -> None:
    vins = {simulated_vin(7, f"VIN{i:05d}") for i in range(500)}
    assert len(vins) == 500 and all(has_valid_check_digit(v) for v in vins)
    assert simulated_vin(7, "VIN00001") == simulated_vin(7, "VIN00001") != simulated_vin(
        8, "VIN00001")

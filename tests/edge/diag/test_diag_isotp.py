"""The native CAN path against simulated ECUs on a virtual bus (can-isotp on both sides)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import can
import pytest
from diag_helpers import channel, dtc_events, make_agent, samples, spooled

from edge.diag.answers import NegativeAnswer, decode_answer
from edge.diag.errors import DiagLinkError
from edge.diag.isotp_link import IsoTpLink
from edge.diag.obd_tap import ObdTap
from edge.diag.poller import Poller, PollGroup
from edge.diag.reader import clear_codes, read_dtcs, read_once, read_values
from edge.diag.uds_client import UdsClient
from edge.diag.uds_map import load_did_map
from edge.sim.ecus import EcuBehaviour, SimulatedEcu

VIN = "WVWZZZ1JZXW000001"
ENGINE: dict[str, Any] = {
    "pids": {0x0C: b"\x1a\xf8", 0x0D: b"\x32", 0x05: b"\x5a", 0x42: b"\x30\xd4",
             0x2F: b"\x80", 0x11: b"\x40", 0x04: b"\x20", 0xA6: b"\x00\x01\xe2\x40"},
    "vin": VIN,
}


@pytest.fixture
def bus_name() -> str:
    return channel()


@pytest.fixture
def tester(bus_name: str) -> Iterator[can.BusABC]:
    bus = can.Bus(interface="virtual", channel=bus_name)
    yield bus
    bus.shutdown()


def _ecus(bus_name: str, *behaviours: tuple[int, EcuBehaviour],
          extended: bool = False) -> list[SimulatedEcu]:
    return [SimulatedEcu(bus_name, b, index=i, address=i, extended=extended)
            for i, b in behaviours]


def _stop(ecus: list[SimulatedEcu]) -> None:
    for ecu in ecus:
        ecu.stop()


def test_answers_of_several_ecus_multi_frame_and_a_slow_one(bus_name: str,
                                                           tester: can.BusABC) -> None:
    ecus = _ecus(bus_name,
                 (0, EcuBehaviour(**ENGINE, dtcs={0x03: [0x0A80, 0x0562], 0x07: [0x5B00],
                                                  0x0A: [0x0A80]})),
                 (2, EcuBehaviour(pids={0x5B: b"\x80"}, dtcs={0x03: [0x0A7F]},
                                  count_byte=False, delay=0.25)))
    try:
        with IsoTpLink(tester, timeout=0.6) as link:
            snap = read_once(link, link.protocol)
    finally:
        _stop(ecus)
    assert snap.vin == VIN                                  # 20-byte, multi-frame answer
    assert snap.supported == {"0x7E8": [0x04, 0x05, 0x0C, 0x0D, 0x11, 0x2F, 0x42, 0xA6],
                              "0x7EA": [0x5B]}
    values = {name: value for _, name, value in snap.values}
    assert values["Vehicle.Powertrain.CombustionEngine.Speed"] == 1726.0
    assert values["Vehicle.TraveledDistance"] == 12345.6
    assert values["OBD.HYBRID_BATTERY_REMAINING"] == pytest.approx(50.2, abs=0.1)  # slow ECU
    codes = sorted((e.code, e.status, e.ecu) for e in snap.dtcs)
    assert codes == [("C1B00", "pending", "0x7E8"), ("P0562", "stored", "0x7E8"),
                     ("P0A7F", "stored", "0x7EA"), ("P0A80", "permanent", "0x7E8"),
                     ("P0A80", "stored", "0x7E8")]
    assert snap.as_json()["dtcs"]["permanent"][0]["description"] == (
        "Replace hybrid/EV battery pack")


def test_at_most_six_pids_per_request(bus_name: str, tester: can.BusABC) -> None:
    pids = {p: b"\x10" for p in (0x04, 0x05, 0x0B, 0x0D, 0x0F, 0x11, 0x2F, 0x33, 0x45, 0x46)}
    ecu = SimulatedEcu(bus_name, EcuBehaviour(pids=pids, max_pids=6))
    try:
        with IsoTpLink(tester, timeout=0.3) as link:
            with pytest.raises(ValueError, match="single frame"):
                link.query(bytes([0x01, *list(pids)[:7]]))      # 8 bytes: not one frame
            refused = link.query(bytes([0x01, 0x04, 0x05]))
            found = read_values(link, ObdTap(), list(pids))
    finally:
        ecu.stop()
    assert len(found) == 10 and ecu.answered == 1 + 2                   # 6 + 4 PIDs
    assert refused and decode_answer(refused[0][1]) is not None


def test_older_ecus_get_fewer_pids_per_request(bus_name: str, tester: can.BusABC) -> None:
    pids = {p: b"\x10" for p in (0x04, 0x05, 0x0B, 0x0D, 0x0F)}
    ecu = SimulatedEcu(bus_name, EcuBehaviour(pids=pids, max_pids=2))
    try:
        with IsoTpLink(tester, timeout=0.3) as link:
            refused = link.query(bytes([0x01, 0x04, 0x05, 0x0B]))
            found = read_values(link, ObdTap(), list(pids), per_request=2)
    finally:
        ecu.stop()
    assert decode_answer(refused[0][1]) == NegativeAnswer(0x01, 0x13)
    assert len(found) == 5


def test_response_pending_gets_the_extended_time(bus_name: str, tester: can.BusABC) -> None:
    ecu = SimulatedEcu(bus_name, EcuBehaviour(dtcs={0x03: [0x0AA6]}, pending=True, delay=0.4))
    try:
        with IsoTpLink(tester, timeout=0.2, pending_timeout=2.0) as link:
            events = read_dtcs(link, ObdTap(), ["stored"])
    finally:
        ecu.stop()
    assert [(e.code, e.description) for e in events] == [
        ("P0AA6", "Hybrid/EV battery voltage system isolation fault")]


def test_29_bit_functional_requests(bus_name: str, tester: can.BusABC) -> None:
    ecus = _ecus(bus_name, (0x10, EcuBehaviour(**ENGINE, dtcs={0x03: [0x4035]})),
                 (0x28, EcuBehaviour(pids={0x5B: b"\xff"}, dtcs={0x03: []})), extended=True)
    try:
        with IsoTpLink(tester, extended=True, ecus=(0x10, 0x28), timeout=0.4) as link:
            snap = read_once(link, link.protocol)
    finally:
        _stop(ecus)
    assert snap.protocol == "ISO 15765-4 (CAN 29/500)" and snap.vin == VIN
    assert set(snap.supported) == {"0x10", "0x28"}
    assert [(e.code, e.ecu) for e in snap.dtcs] == [("C0035", "0x10")]


def test_codes_are_cleared_only_on_request(bus_name: str, tester: can.BusABC) -> None:
    ecu = SimulatedEcu(bus_name, EcuBehaviour(**ENGINE, dtcs={0x03: [0x0562], 0x07: [0x0563]}))
    try:
        with IsoTpLink(tester, timeout=0.3) as link:
            first = read_once(link, link.protocol)
            second = read_once(link, link.protocol, clear=True)
            after = read_dtcs(link, ObdTap())
            assert clear_codes(link)
    finally:
        ecu.stop()
    assert not first.cleared and len(first.dtcs) == 2
    assert second.cleared and len(second.dtcs) == 2      # read before clearing
    assert after == []


def test_a_passive_agent_lands_what_the_active_client_asks(bus_name: str, tester: can.BusABC,
                                                          tmp_path: Path) -> None:
    ecu = SimulatedEcu(bus_name, EcuBehaviour(**ENGINE, dtcs={0x03: [0x0A80]}))
    listener = can.Bus(interface="virtual", channel=bus_name)
    agent, spool = make_agent(listener, tmp_path / "spool", [ObdTap()])
    try:
        with IsoTpLink(tester, timeout=0.3) as link:
            snap = read_once(link, link.protocol)
        agent.drain(lambda: True)
        agent.flush()
    finally:
        ecu.stop()
        listener.shutdown()
    messages = spooled(spool)
    landed = {name for _, name, _ in samples(messages)}
    assert landed == {name for _, name, _ in snap.values}
    assert [(e.code, e.source) for e in dtc_events(messages)] == [("P0A80", "obd")]


def test_uds_battery_data_over_isotp(bus_name: str, tester: can.BusABC) -> None:
    cells = b"".join((3900 + n).to_bytes(2, "big") for n in range(16))
    answers = {b"\x22\x01\x01": b"\x62\x01\x01\xb4", b"\x22\x01\x02": b"\x62\x01\x02\x1f\x40",
               b"\x22\x01\x03": b"\x62\x01\x03" + cells,
               b"\x22\x01\x04": b"\x62\x01\x04" + bytes([60, 61, 62, 63, 64, 65, 66, 0xFF])}
    ecu = SimulatedEcu(bus_name, EcuBehaviour(uds=answers, delay=0.05), ids=(0x744, 0x74C))
    client = UdsClient(tester, load_did_map("fleetcare_ref"), timeout=0.5)
    try:
        values = dict(client.read_all())
        with pytest.raises(DiagLinkError, match="no answer"):
            UdsClient.request(client, b"\x10\x03")      # session control: this ECU stays silent
    finally:
        client.close()
        ecu.stop()
    assert values["Vehicle.Powertrain.TractionBattery.StateOfHealth"] == 90.0
    assert values["Vehicle.Powertrain.TractionBattery.StateOfCharge.Current"] == 80.0
    assert values["UDS.Aurora.CellVoltage16"] == pytest.approx(3.915)
    assert values["UDS.Aurora.CellTemperature7"] == 26.0 and len(values) == 2 + 16 + 7


def test_polling_schedule_per_group(bus_name: str, tester: can.BusABC) -> None:
    ecu = SimulatedEcu(bus_name, EcuBehaviour(**ENGINE, dtcs={0x03: [0x0A80]}))
    groups = [PollGroup("fast", (0x0C, 0x0D), 1.0), PollGroup("slow", (0x05, 0x5C), 10.0)]
    try:
        with IsoTpLink(tester, timeout=0.3) as link:
            poller = Poller(link, groups, dtc_interval_s=60.0, clock=lambda: 0.0)
            first = poller.poll(0.0)
            assert poller.due(0.5) == []
            assert poller.due(1.0) == ["fast"]
            second = poller.poll(1.0)
            assert poller.due(10.0) == ["fast", "slow"]
    finally:
        ecu.stop()
    assert {n for _, n, _ in first.samples} == {
        "Vehicle.Powertrain.CombustionEngine.Speed", "Vehicle.Speed",
        "Vehicle.Powertrain.CombustionEngine.ECT"}
    assert [e.code for e in first.dtcs] == ["P0A80"] and second.dtcs == ()
    assert {n for _, n, _ in second.samples} == {
        "Vehicle.Powertrain.CombustionEngine.Speed", "Vehicle.Speed"}
    assert poller.requests_skipped == 1                  # 0x5C (oil temperature) unsupported

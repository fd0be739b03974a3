"""The agent on a python-can virtual bus, publishing to a real broker through its spool."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import can
import cantools
import pytest

from edge.agent import Agent, TapResult
from edge.config import REFERENCE_DBC, REFERENCE_RULES
from edge.decode import Decoder, load_dbcs
from edge.publish import Publisher
from edge.rules import load_rules
from edge.spool import Spool
from edge.wire import contract
from tests.contract_subscriber import ContractSubscriber


@pytest.fixture
def db() -> cantools.database.can.Database:
    return load_dbcs([REFERENCE_DBC])[0]


@pytest.fixture
def buses() -> Iterator[tuple[can.BusABC, can.BusABC]]:
    channel = f"test-agent-{uuid.uuid4().hex}"
    sender = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    reader = can.Bus(interface="virtual", channel=channel)
    yield sender, reader
    sender.shutdown()
    reader.shutdown()


def _frames(db: cantools.database.can.Database, n: int) -> list[can.Message]:
    health = db.get_message_by_name("BMS_Health")
    dtc = db.get_message_by_name("DIAG_DtcReport")
    frames = []
    for i in range(n):
        data = health.encode({"StateOfHealth": 90.0 - i * 0.1, "InsulationResistance": 500,
                              "CellTempMin": 20, "CellTempMax": 25})
        frames.append(can.Message(arbitration_id=health.frame_id, data=data, is_extended_id=False,
                                  timestamp=1_767_225_600.0 + i))
    frames.append(can.Message(arbitration_id=0x7FF, data=bytes(8), is_extended_id=False,
                              timestamp=1_767_225_600.0 + n))
    code = dtc.encode({"DtcCode": 0x0A80, "DtcStatus": 0, "EcuAddress": 0x10, "DtcCount": 1})
    frames += [can.Message(arbitration_id=dtc.frame_id, data=code, is_extended_id=False,
                           timestamp=1_767_225_600.0 + n + k) for k in (0, 1, 2, 7200)]
    return frames


@pytest.mark.broker
def test_agent_publishes_every_decoded_signal_once(
    broker_url: str, tmp_path: Path, db: cantools.database.can.Database,
    buses: tuple[can.BusABC, can.BusABC],
) -> None:
    sender, reader = buses
    vehicle = f"V{uuid.uuid4().hex[:8]}"
    collector = ContractSubscriber(broker_url, f"{contract.TOPIC_ROOT}/vehicles/{vehicle}/#")
    spool = Spool(tmp_path / "spool")
    publisher = Publisher(spool, broker_url, client_id=f"test-{vehicle}")
    agent = Agent(vehicle, reader, Decoder([db]), load_rules(REFERENCE_RULES), spool, publisher,
                  batch_signals=50)
    publisher.start()
    frames = _frames(db, 40)
    for frame in frames:
        sender.send(frame)
    agent.drain(lambda: agent.stats().frames_read >= len(frames))
    agent.flush()
    assert publisher.wait_drained(20)
    stats = agent.stats()
    assert stats.frames_read == len(frames)
    assert stats.unknown_frames == 1
    # The same pending code within the refresh interval is one event; two hours later it is
    # reported again, so the backend knows it is still present.
    assert stats.dtc_events == 2
    assert collector.wait_for(lambda: collector.signals() >= stats.signals_spooled)
    assert collector.signals() == stats.signals_spooled == 40 * 4
    telemetry = [m for m in collector.messages if isinstance(m, contract.TelemetryBatch)]
    soh = [v for m in telemetry for s, v in zip(m.signal, m.value, strict=True)
           if s == "Vehicle.Powertrain.TractionBattery.StateOfHealth"]
    assert soh[0] == pytest.approx(90.0, abs=0.1)
    assert telemetry[0].ts[0] == 1_767_225_600.0  # stamped with the frame's own time
    dtcs = [e for m in collector.messages if isinstance(m, contract.DtcBatch) for e in m.events]
    assert [(e.code, e.status) for e in dtcs] == [("P0A80", "pending")] * 2
    assert dtcs[1].ts - dtcs[0].ts == 7200
    assert len({m.msg_id for m in collector.messages}) == len(collector.messages)
    publisher.stop()
    collector.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.broker
def test_dead_broker_loses_nothing(broker_url: str, tmp_path: Path) -> None:
    vehicle = f"V{uuid.uuid4().hex[:8]}"
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir)
    offline = Publisher(spool, f"mqtt://127.0.0.1:{_closed_port()}", "offline")
    offline.start()
    for i in range(5):
        batch = contract.TelemetryBatch(f"m{i}", vehicle, [1.0], ["Vehicle.Speed"], [float(i)])
        spool.append(contract.telemetry_topic(vehicle), contract.encode(batch))
    offline.notify()
    assert not offline.wait_drained(0.5)  # nobody acknowledged: everything stays on disk
    offline.stop()

    collector = ContractSubscriber(broker_url, f"{contract.TOPIC_ROOT}/vehicles/{vehicle}/#")
    online = Publisher(Spool(spool_dir), broker_url, f"online-{vehicle}")  # as after a reboot
    online.start()
    assert online.wait_drained(20)
    assert collector.wait_for(lambda: collector.signals() >= 5)
    assert collector.signals() == 5
    assert sorted(m.msg_id for m in collector.messages) == [f"m{i}" for i in range(5)]
    online.stop()
    collector.close()


class _EchoTap:
    """A tap that reads byte 0 of 0x7E8 frames as a value and byte 1 = 1 as a fault code."""

    def feed(self, frame: can.Message) -> TapResult | None:
        if frame.arbitration_id != 0x7E8:
            return None
        dtcs = (contract.DtcEvent(frame.timestamp, "P0562", "stored", "0x7E8", "obd"),)
        return TapResult(((frame.timestamp, "OBD.ECHO", float(frame.data[0])),),
                         dtcs if frame.data[1] else ())


def test_taps_add_samples_and_report_fault_codes_at_once(
    tmp_path: Path, db: cantools.database.can.Database, buses: tuple[can.BusABC, can.BusABC],
) -> None:
    sender, reader = buses
    spool = Spool(tmp_path / "spool", fsync=False)
    agent = Agent("V1", reader, Decoder([db]), load_rules(REFERENCE_RULES), spool, None,
                  taps=[_EchoTap()])
    for i, flag in enumerate((0, 1, 1)):
        sender.send(can.Message(arbitration_id=0x7E8, data=bytes([40 + i, flag]),
                                is_extended_id=False, timestamp=100.0 + i))
    agent.drain(lambda: agent.stats().frames_read >= 3)
    # The fault code was spooled at once, without waiting for the batch to fill.
    topics = [e.topic for s in spool.pending() if (e := spool.read(s))]
    assert contract.dtc_topic("V1") in topics
    agent.flush()
    messages = [contract.decode(e.payload) for s in spool.pending() if (e := spool.read(s))]
    telemetry = [m for m in messages if isinstance(m, contract.TelemetryBatch)]
    assert [v for m in telemetry for v in m.value] == [40.0, 41.0, 42.0]
    assert agent.stats().dtc_events == 1  # the repeat within the refresh interval is not news


class _ScriptedTap:
    """A tap that reports P0562 present, then cleared, then present again (one frame each)."""

    def __init__(self) -> None:
        self.states = [False, True, False]

    def feed(self, frame: can.Message) -> TapResult | None:
        if frame.arbitration_id != 0x7E9 or not self.states:
            return None
        cleared = self.states.pop(0)
        event = contract.DtcEvent(frame.timestamp, "P0562", "stored", "0x7E9", "obd",
                                  cleared=cleared)
        return TapResult((), (event,))


def test_a_code_that_returns_soon_after_clearing_is_reported_again(
    tmp_path: Path, db: cantools.database.can.Database, buses: tuple[can.BusABC, can.BusABC],
) -> None:
    sender, reader = buses
    spool = Spool(tmp_path / "spool", fsync=False)
    agent = Agent("V1", reader, Decoder([db]), load_rules(REFERENCE_RULES), spool, None,
                  taps=[_ScriptedTap()])
    for i in range(3):  # 10 s apart: far inside the one-hour refresh interval
        sender.send(can.Message(arbitration_id=0x7E9, data=bytes(8), is_extended_id=False,
                                timestamp=100.0 + 10 * i))
    agent.drain(lambda: agent.stats().frames_read >= 3)
    messages = [contract.decode(e.payload) for s in spool.pending() if (e := spool.read(s))]
    events = [e for m in messages if isinstance(m, contract.DtcBatch) for e in m.events]
    assert [(e.ts, e.cleared) for e in events] == [(100.0, False), (110.0, True), (120.0, False)]

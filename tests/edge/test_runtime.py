"""The agent as ``fleetcare edge run`` assembles it, on a virtual bus, to a real broker."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from pathlib import Path

import can
import pytest
from can.interfaces import virtual as virtual_bus

from edge.agent import AgentStats
from edge.config import load_edge_settings
from edge.decode import load_dbcs
from edge.errors import ConfigError
from edge.runtime import run_agent_forever
from edge.source import open_source
from edge.spool import Spool
from pipeline.ingest.service import Ingestor
from tests.e2e.replay_helpers import rows_of


@pytest.mark.broker
def test_agent_runs_until_stopped_and_leaves_nothing_unsent(broker_url: str, tmp_path: Path,
                                                           db_path: Path) -> None:
    channel = f"runtime-{uuid.uuid4().hex}"
    vehicle = f"GW1-{uuid.uuid4().hex[:6]}"
    settings = load_edge_settings(vehicle_id=vehicle, interface="virtual", channel=channel,
                                  broker_url=broker_url, spool_dir=tmp_path)
    # The agent deletes a spooled message on ingest's receipt: the store must be there.
    ingestor = Ingestor(broker_url, db_path, client_id=f"runtime-ingest-{vehicle}",
                        require_registered_vehicles=False, rate_limit=None,
                        flush_interval_s=0.05).start()
    db = load_dbcs(settings.dbc)[0]
    message = db.get_message_by_name("BCM_Ambient")
    sender = can.Bus(interface="virtual", channel=channel)
    stop = threading.Event()
    result: list[AgentStats] = []
    runner = threading.Thread(target=lambda: result.append(run_agent_forever(settings, stop)))
    runner.start()
    try:
        # Frames sent before the agent opened its bus would not reach it: wait until it has.
        deadline = time.monotonic() + 30
        while len(virtual_bus.channels.get(channel, [])) < 2:
            assert time.monotonic() < deadline, "the agent never opened its bus"
            stop.wait(0.01)
        for i in range(20):
            sender.send(can.Message(arbitration_id=message.frame_id, is_extended_id=False,
                                    data=message.encode({"AmbientTemperature": -5.0 + i})))
    finally:
        stop.set()
        runner.join(timeout=30)
        sender.shutdown()
        ingestor.stop()
    stats = result[0]
    assert stats.frames_read == 20 and stats.signals_spooled == 20
    assert Spool(tmp_path / vehicle).pending() == []  # everything receipted by the store
    assert rows_of(db_path, vehicle)[0] == 20


def test_unknown_interface_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no-such-driver"):
        open_source("no-such-driver", "x")


def test_taps_need_the_diagnostics_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.runtime import load_taps

    assert load_taps([]) == []  # nothing imported when no tap is asked for
    monkeypatch.setitem(sys.modules, "edge.diag.taps", None)  # as before issue 5 lands
    with pytest.raises(ConfigError, match=r"taps obd, j1939 need the edge\.diag\.taps module"):
        load_taps(["obd", "j1939"])


def test_rules_derived_filter_keeps_unneeded_ids_out_of_the_agent(tmp_path: Path) -> None:
    from edge.runtime import assemble

    rules = tmp_path / "rules.toml"
    rules.write_text('vss_version = "4.0"\npublish_unmapped = false\n'
                     '[[signal]]\ndbc = "BCM_Ambient.AmbientTemperature"\n'
                     'vss = "Vehicle.Exterior.AirTemperature"\n')
    channel = f"filter-{uuid.uuid4().hex}"
    settings = load_edge_settings(vehicle_id="GW2", interface="virtual", channel=channel,
                                  rules=rules, spool_dir=tmp_path, spool_fsync=False)
    parts = assemble(settings)
    db = load_dbcs(settings.dbc)[0]
    ambient, motion = db.get_message_by_name("BCM_Ambient"), db.get_message_by_name("VCU_Motion")
    sender = can.Bus(interface="virtual", channel=channel)
    try:
        for i in range(5):
            sender.send(can.Message(arbitration_id=motion.frame_id, is_extended_id=False,
                                    data=motion.encode({"VehicleSpeed": 50, "Odometer": i})))
            sender.send(can.Message(arbitration_id=ambient.frame_id, is_extended_id=False,
                                    data=ambient.encode({"AmbientTemperature": 10 + i})))
        parts.agent.drain(lambda: parts.agent.stats().frames_read >= 5)
        parts.agent.finish()
    finally:
        sender.shutdown()
        parts.source.shutdown()
        parts.spool.close()
    stats = parts.agent.stats()
    # The motion frames never reached Python: the bus filter dropped them.
    assert (stats.frames_read, stats.unknown_frames, stats.filtered_frames) == (5, 0, 0)
    assert stats.signals_spooled == 5

"""The agent as ``fleetcare edge run`` assembles it, on a virtual bus, to a real broker."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import can
import pytest

from edge.agent import AgentStats
from edge.config import load_edge_settings
from edge.decode import load_dbcs
from edge.errors import ConfigError
from edge.runtime import run_agent_forever
from edge.source import open_source
from edge.spool import Spool


@pytest.mark.broker
def test_agent_runs_until_stopped_and_leaves_nothing_unsent(broker_url: str,
                                                           tmp_path: Path) -> None:
    channel = f"runtime-{uuid.uuid4().hex}"
    settings = load_edge_settings(vehicle_id="GW1", interface="virtual", channel=channel,
                                  broker_url=broker_url, spool_dir=tmp_path)
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
        while len(can.interfaces.virtual.channels.get(channel, [])) < 2:
            assert time.monotonic() < deadline, "the agent never opened its bus"
            stop.wait(0.01)
        for i in range(20):
            sender.send(can.Message(arbitration_id=message.frame_id, is_extended_id=False,
                                    data=message.encode({"AmbientTemperature": -5.0 + i})))
    finally:
        stop.set()
        runner.join(timeout=30)
        sender.shutdown()
    stats = result[0]
    assert stats.frames_read == 20 and stats.signals_spooled == 20
    assert Spool(tmp_path / "GW1").pending() == []  # everything acknowledged by the broker


def test_unknown_interface_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no-such-driver"):
        open_source("no-such-driver", "x")

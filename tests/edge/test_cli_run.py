"""``fleetcare edge run`` as systemd runs it: READY=1, a fed watchdog, a clean SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.broker
def test_edge_run_notifies_systemd_and_stops_on_sigterm(broker_url: str, tmp_path: Path) -> None:
    notify_path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(notify_path)
    server.settimeout(30)
    # No ingest behind this broker: with receipts off the PUBACK retires what the agent
    # spools (its start's vehicle info), so the spool drains.
    env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="200000",
               FLEETCARE_EDGE__SPOOL_DIR=str(tmp_path / "spool"),
               FLEETCARE_EDGE__RECEIPTS="false")
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "edge", "run", "--vehicle", "GWCLI",
         "--interface", "virtual", "--channel", f"cli-{uuid.uuid4().hex}",
         "--broker", broker_url], cwd=REPO, env=env, stdout=subprocess.PIPE)
    try:
        assert server.recv(64) == b"READY=1"
        assert server.recv(64) == b"WATCHDOG=1"  # the idle read loop still turns
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        server.close()
    assert process.returncode == 0
    summary = orjson.loads(out.strip().splitlines()[-1])
    assert summary["frames_read"] == 0 and summary["drained"] is True
    assert summary["counters"]["published"] == 1  # the vehicle info of its start
    assert "spool_bytes" in summary["counters"]

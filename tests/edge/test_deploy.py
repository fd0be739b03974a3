"""The systemd unit and the example settings under deploy/ stay in step with the code."""

from __future__ import annotations

import configparser
from pathlib import Path

from edge.config import load_edge_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_unit_is_notify_with_watchdog_and_restart() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(DEPLOY / "fleetcare-edge.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].split()[1:4] == ["edge", "run", "--config"]


def test_example_settings_load() -> None:
    settings = load_edge_settings(DEPLOY / "edge.toml")
    assert settings.interface == "socketcan" and settings.broker_url.startswith("mqtts://")
    assert settings.tls_cert is not None

"""Long-running commands start, serve on 127.0.0.1 and stop cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from pipeline.broker.harness import free_port, wait_for_port


def _start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args],
                            env={**os.environ, **(env or {})}, stderr=subprocess.PIPE)


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def test_crm_serve_lists_leads_then_stops_on_sigterm() -> None:
    port = free_port()
    process = _start(["crm", "serve", "--port", str(port)],
                     {"FLEETCARE_PIPELINE__CRM_SECRET": "whsec_c2VjcmV0LXNlY3JldA=="})
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/leads", timeout=10) as answer:
            assert answer.status == 200
    finally:
        assert _stop(process) == 0


def test_crm_serve_without_a_secret_says_what_to_set() -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLEETCARE_PIPELINE__CRM_SECRET"}
    done = subprocess.run([sys.executable, "-m", "flows.cli", "crm", "serve", "--port", "0"],
                          env=env, capture_output=True, timeout=60)
    assert done.returncode == 2
    assert b"FLEETCARE_PIPELINE__CRM_SECRET" in done.stderr


@pytest.mark.broker
def test_broker_command_serves_mqtt_then_stops_on_sigterm() -> None:
    port = free_port()
    process = _start(["broker", "--port", str(port)])
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30)
    finally:
        assert _stop(process) == 0

"""Schedules fire: ``fleetcare flows serve`` on a real ``prefect server start``.

Prefect's in-process test harness and ``flows run`` never exercise the server's scheduler
service, which is what turns a deployment's schedule into flow runs; under prefect 3.8.8 with
SQLAlchemy 2.1 that service fails on every loop, so a served deployment never runs. Here a
real server (its own ``PREFECT_HOME``, a free port) schedules ``deliver_leads``, served by the
``fleetcare`` command with a five-second interval against stores in ``tmp_path``; at least
two runs the scheduler created must complete, and the urgent lead the store holds must reach a
real CRM on 127.0.0.1 exactly once.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from flow_fixtures import URGENT_VEHICLE, Stores

from pipeline.broker.harness import free_port
from pipeline.sandbox.reference_crm import CrmReceiver

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

INTERVAL_S = 5
"""The schedule the test serves ``deliver_leads`` on (``--interval``)."""
STARTUP_TIMEOUT_S = 300.0
"""How long the server may take to answer its health check on a loaded machine (a fresh
database is migrated first: a few seconds idle, minutes when other work hogs the disk)."""
RUNS_TIMEOUT_S = 300.0
"""How long two scheduled runs may take to complete on a loaded machine."""
STOP_TIMEOUT_S = 120.0
"""How long a process may take to stop on SIGTERM."""
T = TypeVar("T")


def _prefect_env(home: Path, api_url: str) -> dict[str, str]:
    """This process's environment without any Prefect setting, plus the server's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return {**env, "PREFECT_HOME": str(home), "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def _tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _api(api_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(f"{api_url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return orjson.loads(answer.read())


def _scheduler_errors(server_log: Path) -> list[str]:
    """The server's error lines from its scheduler services (``schedule_deployments``,
    ``schedule_recent_deployments``), each with the exception line that follows it."""
    lines = server_log.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = []
    for number, line in enumerate(lines):
        if "| ERROR" in line and "schedule_" in line:
            cause = next((later for later in lines[number + 1:]
                          if later and not later.startswith((" ", "Traceback"))), "")
            errors.append(f"{line}\n{cause}")
    return errors


def _poll(what: str, check: Callable[[], T | None], timeout_s: float,
          alive: list[tuple[subprocess.Popen[bytes], Path]], server_log: Path) -> T:
    """``check()``'s first non-None answer. Fails naming ``what`` on timeout, or at once
    when one of the ``alive`` processes exits (with the end of its log) or the server's
    scheduler logs an error (with that error)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process, log in alive:
            if process.poll() is not None:
                pytest.fail(f"{process.args!r} exited with {process.returncode} while waiting "
                            f"for {what}:\n{_tail(log)}")
        errors = _scheduler_errors(server_log)
        if errors:
            pytest.fail(f"the Prefect server's scheduler failed while waiting for {what}:\n"
                        + "\n".join(errors))
        answer = check()
        if answer is not None:
            return answer
        time.sleep(0.5)
    logs = "\n\n".join(f"{log.name}:\n{_tail(log)}" for _, log in alive)
    pytest.fail(f"no {what} within {timeout_s:g} s\n{logs}")


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path, cwd: Path
             ) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` in its own session with its output in ``log``; SIGTERM it on the way out
    (its whole group, should it have children) and require it to exit by itself."""
    with log.open("wb") as out:
        process = subprocess.Popen(args, env=env, cwd=cwd, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
                pytest.fail(f"{args!r} did not stop on SIGTERM:\n{_tail(log)}")


def _server_healthy(api_url: str) -> bool | None:
    try:
        return _api(api_url, "GET", "/health") is True or None
    except (OSError, ValueError):
        return None


def _scheduled_runs(api_url: str) -> list[dict[str, Any]]:
    return list(_api(api_url, "POST", "/flow_runs/filter",
                     {"sort": "EXPECTED_START_TIME_ASC", "limit": 200}))


def _by_scheduler(run: dict[str, Any]) -> bool:
    created_by = run.get("created_by") or {}
    return bool(run["auto_scheduled"]) and created_by.get("type") == "SCHEDULE"


def test_a_served_deployment_runs_on_its_schedule(
        tmp_path: Path, stores: Stores, crm_secret: str) -> None:
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _prefect_env(tmp_path / "prefect-home", api_url)
    server_log, serve_log = tmp_path / "server.log", tmp_path / "serve.log"
    prefect = str(Path(sys.executable).with_name("prefect"))
    with CrmReceiver(crm_secret) as crm, \
            _process([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                     env, server_log, tmp_path) as server:
        _poll("healthy Prefect server", lambda: _server_healthy(api_url), STARTUP_TIMEOUT_S,
              [(server, server_log)], server_log)
        # The runner looks for due runs every second and runs one at a time (`flows serve`
        # honours PREFECT_RUNNER_PROCESS_LIMIT), so the runs the scheduler creates every five
        # seconds wait their turn instead of each starting a process on a shared machine.
        serve_env = {**env, "PREFECT_RUNNER_POLL_FREQUENCY": "1",
                     "PREFECT_RUNNER_PROCESS_LIMIT": "1"}
        with _process([sys.executable, "-m", "flows.cli", "flows", "serve",
                       "--only", "deliver_leads", "--interval", str(INTERVAL_S),
                       "--serving", stores.serving, "--snapshot", stores.snapshot,
                       "--crm-url", crm.url], serve_env, serve_log, tmp_path) as serve:
            alive = [(server, server_log), (serve, serve_log)]

            def two_completed() -> list[dict[str, Any]] | None:
                done = [r for r in _scheduled_runs(api_url) if r["state_type"] == "COMPLETED"]
                return done if len(done) >= 2 else None

            completed = _poll("two completed flow runs", two_completed, RUNS_TIMEOUT_S, alive,
                              server_log)
            runs = _scheduled_runs(api_url)
            deployments = _api(api_url, "POST", "/deployments/filter", {})
        assert serve.returncode == 0, _tail(serve_log)
    # uvicorn shuts the server down gracefully, then re-raises the SIGTERM it caught.
    assert server.returncode in (0, -signal.SIGTERM), _tail(server_log)

    assert [d["name"] for d in deployments] == ["deliver_leads"]
    schedules = deployments[0]["schedules"]
    assert [s["schedule"]["interval"] for s in schedules] == [INTERVAL_S]
    # Every run was created by the server's scheduler, from this deployment's schedule.
    assert runs and all(_by_scheduler(r) for r in runs)
    assert {r["deployment_id"] for r in runs} == {deployments[0]["id"]}
    # Two distinct slots of the schedule ran, a whole number of intervals apart.
    starts = sorted(dt.datetime.fromisoformat(r["expected_start_time"]) for r in completed)
    slots = (starts[1] - starts[0]).total_seconds() / INTERVAL_S
    assert slots >= 1 and slots == pytest.approx(round(slots), abs=1e-3)
    # The scheduled runs did the flow's work: the urgent lead reached the CRM, once.
    assert [lead["vehicle"]["vehicle_id"] for lead in crm.leads()] == [URGENT_VEHICLE]
    assert crm.received_count == 1

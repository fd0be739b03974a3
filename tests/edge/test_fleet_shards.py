"""Fleets larger than one process: the descriptor arithmetic, the plan, and the processes.

paho's ``select()`` cannot watch a descriptor numbered 1,024 or above, so ``fleetcare sim
run`` spreads a large fleet over agent processes. The plan is checked as plain arithmetic
(every vehicle in exactly one shard, no shard over the limit, refusals that say what to do);
the descriptor count it rests on is measured on real agents against the test broker; and the
processes are checked as a person runs them: ``fleetcare sim run`` as its own process,
giving the same summary in four processes as in one, refusing impossible plans in one line,
relaying a child's error in one line, and leaving no child behind when it is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.agent import AgentStats
from edge.config import REFERENCE_RULES
from edge.errors import BrokerUnreachableError, FleetCapacityError, FleetProcessError
from edge.rules import load_rules
from edge.sim.capacity import (
    FD_RESERVE,
    FD_SETSIZE,
    FDS_PER_VEHICLE,
    check_fits,
    plan_shards,
    vehicle_capacity,
)
from edge.sim.fleet import FleetResult, run_fleet
from edge.sim.shards import (
    ShardJob,
    _error_of,
    merge_results,
    result_from_json,
    result_to_json,
)
from edge.sim.simulator import make_fleet
from pipeline.broker.harness import free_port
from tests.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
START_TS = 1_767_225_600.0  # 2026-01-01


def _sizes(plan_shards_result: tuple[range, ...]) -> list[int]:
    return [len(shard) for shard in plan_shards_result]


# --- the arithmetic ---------------------------------------------------------------------------

def test_capacity_is_what_fits_below_the_select_limit_after_the_reserve() -> None:
    assert vehicle_capacity(3, FD_SETSIZE) == (1024 - 3 - FD_RESERVE) // FDS_PER_VEHICLE == 95
    assert vehicle_capacity(500, FD_SETSIZE) == (1024 - 500 - FD_RESERVE) // FDS_PER_VEHICLE
    assert vehicle_capacity(3, 256) == 18  # a low ulimit -n counts, not only select()
    assert vehicle_capacity(1000, FD_SETSIZE) == 0


def test_a_fleet_that_fits_runs_in_the_calling_process() -> None:
    plan = plan_shards(40, capacity=95, local_capacity=60)
    assert plan.in_process and plan.processes == 0 and plan.shards == (range(40),)


def test_one_shard_that_does_not_fit_here_still_gets_a_process_of_its_own() -> None:
    plan = plan_shards(40, capacity=95, local_capacity=30)  # this process is crowded
    assert not plan.in_process and plan.processes == 1


def test_a_large_fleet_takes_the_fewest_processes_and_splits_them_evenly() -> None:
    plan = plan_shards(2000, capacity=95, local_capacity=95)
    assert plan.processes == 22 and plan.per_process == 95  # ceil(2000 / 95)
    assert set(_sizes(plan.shards)) == {90, 91}
    assert plan.shards[0] == range(0, 91) and plan.shards[-1].stop == 2000


def test_a_smaller_limit_per_process_means_more_processes() -> None:
    plan = plan_shards(240, per_process=60, capacity=95, local_capacity=95)
    assert _sizes(plan.shards) == [60, 60, 60, 60] and plan.per_process == 60


def test_more_processes_than_needed_are_used_but_never_more_than_vehicles() -> None:
    assert _sizes(plan_shards(7, processes=3, capacity=95, local_capacity=0).shards) == [3, 2, 2]
    assert _sizes(plan_shards(3, processes=8, capacity=95, local_capacity=0).shards) == [1, 1, 1]


@given(vehicles=st.integers(0, 5000), per_process=st.integers(1, 95),
       extra=st.integers(0, 20))
def test_every_vehicle_is_in_exactly_one_shard_and_no_shard_is_too_big(
        vehicles: int, per_process: int, extra: int) -> None:
    needed = max(1, -(-vehicles // per_process))
    plan = plan_shards(vehicles, processes=needed + extra, per_process=per_process,
                       capacity=95, local_capacity=0)
    covered = [i for shard in plan.shards for i in shard]
    assert covered == list(range(vehicles))  # in order, each once
    sizes = _sizes(plan.shards)
    assert max(sizes) <= per_process and max(sizes) - min(sizes) <= 1
    assert len(plan.shards) == min(needed + extra, max(1, vehicles))


def test_too_many_vehicles_per_process_is_refused_with_the_limit() -> None:
    with pytest.raises(FleetCapacityError, match=r"--vehicles-per-process 200: .*at most 95"):
        plan_shards(400, per_process=200, capacity=95)


def test_too_few_processes_is_refused_with_the_number_needed() -> None:
    with pytest.raises(FleetCapacityError, match=r"--processes 2 would give 150 .* need 4 "):
        plan_shards(300, processes=2, per_process=80, capacity=95)


def test_no_room_at_all_says_to_raise_the_limit() -> None:
    with pytest.raises(FleetCapacityError, match="raise ulimit -n"):
        plan_shards(1, capacity=0)


def test_run_fleet_refuses_a_fleet_this_process_cannot_host() -> None:
    with pytest.raises(FleetCapacityError, match=r"1000 vehicles in one process .* --processes"):
        check_fits(1000)
    check_fits(1)  # the test process has room for one


# --- what parent and child exchange -----------------------------------------------------------

def _result(vehicles: list[str], frames: int) -> FleetResult:
    stats = {v: AgentStats(frames, frames, 0, 0, 0, frames * 3, 1, 2) for v in vehicles}
    return FleetResult(len(vehicles), 5, frames * len(vehicles), frames * len(vehicles),
                       frames * len(vehicles), 0, 0, 3 * frames * len(vehicles), len(vehicles),
                       3 * len(vehicles), 0, stats)


def test_shard_results_add_up_to_the_fleet_in_shard_order() -> None:
    merged = merge_results([_result(["A", "B"], 10), _result(["C"], 4)], days=5)
    assert merged.vehicles == 3 and merged.days == 5
    assert merged.frames_sent == 24 and merged.signals_spooled == 72 and merged.messages == 9
    assert list(merged.per_vehicle) == ["A", "B", "C"]


def test_a_result_survives_its_trip_through_json() -> None:
    result = _result(["VIN00001", "VIN00002"], 7)
    assert result_from_json(orjson.loads(orjson.dumps(result_to_json(result)))) == result


def test_a_job_survives_its_trip_through_json() -> None:
    job = ShardJob("VIN00000..VIN00002", tuple(make_fleet(3, seed=4, start_ts=START_TS)),
                   "mqtt://user:secret@127.0.0.1:1883", str(REFERENCE_RULES), 3, START_TS,
                   "/tmp/spool", 0.2, 30.0, None, 20)
    line = job.to_json()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert ShardJob.from_json(line) == job


def test_a_childs_error_is_raised_again_as_its_own_class() -> None:
    error = _error_of("BrokerUnreachableError", "broker mqtt://x unreachable")
    assert isinstance(error, BrokerUnreachableError) and str(error) == "broker mqtt://x unreachable"
    assert type(_error_of("NoSuchError", "odd")) is FleetProcessError
    assert type(_error_of("ValueError", "not ours")) is FleetProcessError


# --- the descriptor count the plan rests on ---------------------------------------------------

@pytest.mark.broker
def test_a_vehicle_holds_no_more_descriptors_than_the_plan_counts(broker_url: str,
                                                                  tmp_path: Path) -> None:
    vehicles = 8
    before = len(os.listdir("/proc/self/fd"))
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], len(os.listdir("/proc/self/fd")))
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run_fleet(make_fleet(vehicles, seed=1, start_ts=START_TS), broker_url,
                           load_rules(REFERENCE_RULES), days=2, start_ts=START_TS,
                           spool_dir=tmp_path, snapshot_s=0.2, connect_timeout_s=30,
                           receipts=False)  # no ingest here to receipt anything
    finally:
        done.set()
        sampler.join()
    assert result.signals_spooled > 0
    grown = peak[0] - before
    assert vehicles * (FDS_PER_VEHICLE - 2) <= grown <= vehicles * FDS_PER_VEHICLE


# --- fleetcare sim run as its own process -----------------------------------------------------

def _sim(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", "sim", "run", *args], cwd=REPO,
                          text=True, capture_output=True, timeout=timeout, check=False)


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("flags", "says"), [
    (["--vehicles", "150", "--processes", "1", "--vehicles-per-process", "50"],
     "--processes 1 would give 150 vehicles to a process that can host 50: 150 vehicles "
     "need 3 processes or more"),
    (["--vehicles", "10", "--vehicles-per-process", "5000"],
     "--vehicles-per-process 5000: that many vehicles hold about 50000 file descriptors"),
])
def test_an_impossible_plan_is_one_line_before_anything_starts(flags: list[str],
                                                               says: str) -> None:
    # Nobody listens on the port: the plan is refused before any agent would connect.
    done = _sim("--broker", f"mqtt://127.0.0.1:{free_port()}", "--days", "1", *flags,
                timeout=120)
    assert _one_line(done).startswith(f"fleetcare sim: error: {says}")


def test_a_non_positive_count_is_an_argument_error() -> None:
    done = _sim("--broker", "mqtt://127.0.0.1:1", "--processes", "0", timeout=120)
    assert done.returncode == 2 and "--processes: '0': give 1 or more" in done.stderr


def test_an_agent_processs_error_is_the_commands_one_line(tmp_path: Path) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    done = _sim("--broker", url, "--vehicles", "4", "--vehicles-per-process", "2", "--days", "2",
                "--connect-timeout", "1", "--spool-dir", str(tmp_path / "spool"))
    assert _one_line(done).startswith(
        f"fleetcare sim: error: broker {url} unreachable: [Errno 111] Connection refused "
        "(vehicle VIN0000")


def _children(pid: int) -> list[int]:
    listing = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in listing.read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody has reaped yet."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_no_agent_process_outlives_a_parent_killed_with_sigkill(tmp_path: Path) -> None:
    # Nobody listens: the children wait for their connections, long enough to be seen.
    parent = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "sim", "run", "--broker",
         f"mqtt://127.0.0.1:{free_port()}", "--vehicles", "4", "--vehicles-per-process", "1",
         "--connect-timeout", "120", "--spool-dir", str(tmp_path / "spool")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: len(_children(parent.pid)) >= 2, 120)
        children = _children(parent.pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert wait_until(lambda: not any(_alive(c) for c in children), 60), children
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.slow
@pytest.mark.broker
def test_four_agent_processes_report_what_one_process_reports(broker_url: str,
                                                              tmp_path: Path) -> None:
    # No ingest here: the broker's PUBACK retires the entries (receipts are test_sim_receipts').
    common = ["--broker", broker_url, "--vehicles", "12", "--days", "3", "--snapshot-s", "0.2",
              "--no-receipts"]
    one = _sim(*common, "--processes", "1", "--spool-dir", str(tmp_path / "one"))
    four = _sim(*common, "--vehicles-per-process", "3", "--spool-dir", str(tmp_path / "four"))
    assert one.returncode == four.returncode == 0, one.stderr + four.stderr
    alone, sharded = (orjson.loads(done.stdout.strip().splitlines()[-1]) for done in (one, four))
    assert alone["signals_spooled"] > 0 and alone["vehicles"] == 12
    assert sharded == alone  # same fleet, same counters, same order, whatever the processes

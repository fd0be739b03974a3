"""Bad input to ``edge replay``, ``sim run`` and ``edge run``: one clear line, nothing left over.

Every command runs as its own process, as a person or systemd runs it. A replay refused for
its logs or its broker must exit non-zero with one line on stderr (no traceback) and leave no
state directory behind; ``sim run`` must not simulate for a broker that is not there; ``edge
run`` keeps spooling when the broker is away, by design, and says why on every retry.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import can
import orjson
import pytest

from edge.errors import SpoolError
from edge.logfile import LogFormatError, check_log, read_log
from edge.replaystate import ReplayState
from pipeline.broker.harness import free_port

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "can"
KONA_LOG = SHARED / "kona_2018" / "turnonlog.log"
TRUCK_MF4 = SHARED / "truck_j1939_tp" / "00000001-60B621D9.MF4"
CAR_MF4 = SHARED / "car_obd2_gnss" / "00000002-60FE415D.MF4"


def _blf(path: Path, frames: int = 3000) -> bytes:
    """A BLF recording of the Kona log's first frames, written by python-can, as bytes."""
    writer = can.BLFWriter(str(path))
    for number, frame in enumerate(read_log(KONA_LOG)):
        if number == frames:
            break
        writer.on_message_received(frame)
    writer.stop()
    return path.read_bytes()


def _run(tmp_path: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=120, check=False,
                          env=dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"),
                                   **(env or {})))


def _left_in(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


def _no_replay_state(tmp_path: Path) -> bool:
    """Nothing under the state root but, at most, the empty folders leading to it."""
    root = tmp_path / "state"
    return all(p.is_dir() for p in _left_in(root)) and not any(
        (root / "fleetcare" / "replay").glob("*"))


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("name", "content", "says"), [
    ("empty.log", b"", "is empty"),
    ("comments.log", b"# recorded nothing\n\n", "yielded no frames"),
    ("garbage.log", b"not a candump line\nnor this\n", "yielded no frames (2 malformed lines"),
    ("cut.blf", None, "is truncated"),
    ("cut.mf4", None, "is truncated"),
])
def test_a_replay_of_an_unusable_log_says_why_in_one_line_and_leaves_no_state(
    tmp_path: Path, name: str, content: bytes | None, says: str,
) -> None:
    log = tmp_path / name
    if name.endswith(".blf"):
        whole = _blf(tmp_path / "whole.blf")
        log.write_bytes(whole[: len(whole) * 2 // 3])
    elif name.endswith(".mf4"):
        log.write_bytes(TRUCK_MF4.read_bytes()[:30_001])
    else:
        assert content is not None
        log.write_bytes(content)
    done = _run(tmp_path, "edge", "replay", str(log), "--broker",
                f"mqtt://127.0.0.1:{free_port()}", "--taps", "", "--connect-timeout", "1")
    line = _one_line(done)
    assert line.startswith("fleetcare edge: error: CAN log ") and str(log) in line
    assert says in line
    assert _no_replay_state(tmp_path)


def test_an_unreachable_broker_is_one_line_in_seconds_and_no_state_is_left(
    tmp_path: Path,
) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"  # nobody listens there
    done = _run(tmp_path, "edge", "replay", str(KONA_LOG), "--broker", url, "--taps", "",
                "--connect-timeout", "1")
    line = _one_line(done)
    assert line == (f"fleetcare edge: error: broker {url} unreachable: [Errno 111] Connection "
                    "refused (no connection within 1 s)")
    assert _no_replay_state(tmp_path)


def test_sim_run_with_an_unreachable_broker_fails_before_simulating(tmp_path: Path) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    done = _run(tmp_path, "sim", "run", "--broker", url, "--vehicles", "3", "--days", "2",
                "--connect-timeout", "1", "--spool-dir", str(tmp_path / "spool"))
    line = _one_line(done)
    assert line.startswith(f"fleetcare sim: error: broker {url} unreachable: [Errno 111] "
                           "Connection refused (vehicle ")
    assert done.stdout == ""  # no summary: nothing was simulated


def test_edge_run_keeps_spooling_and_logs_the_reason_on_every_retry(tmp_path: Path) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    env = dict(os.environ, FLEETCARE_EDGE__SPOOL_DIR=str(tmp_path / "spool"),
               FLEETCARE_EDGE__RECONNECT_MIN_S="1", FLEETCARE_EDGE__RECONNECT_MAX_S="1")
    agent = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "edge", "run", "--vehicle", "GW-OUTAGE",
         "--interface", "virtual", "--channel", f"outage-{uuid.uuid4().hex}", "--broker", url],
        cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[str] = queue.Queue()
    stderr = agent.stderr
    assert stderr is not None

    def read() -> None:
        for line in stderr:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    retries: list[str] = []
    try:
        while len(retries) < 2:
            line = lines.get(timeout=60)
            if "cannot connect to the broker" in line:
                retries.append(line)
        agent.send_signal(signal.SIGTERM)
        out, _ = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert all("127.0.0.1" in r and "Connection refused" in r and "retrying" in r
               for r in retries)
    assert agent.returncode == 0  # an outage is not a failure of the gateway's agent
    assert orjson.loads(out.strip().splitlines()[-1])["frames_read"] == 0


def test_a_second_replay_of_the_same_logs_and_vehicle_is_refused_while_one_runs(
    tmp_path: Path,
) -> None:
    root = tmp_path / "state"
    running = ReplayState([KONA_LOG], "V1", root=root)
    with running:
        with pytest.raises(SpoolError, match="another replay of these logs as vehicle V1"):
            ReplayState([KONA_LOG], "V1", root=root).acquire()
        with ReplayState([KONA_LOG], "V2", root=root) as other:  # another vehicle: its own
            assert other.directory != running.directory
            other.remove()
        running.remove()
    assert _left_in(root) == []
    with ReplayState([KONA_LOG], "V1", root=root) as again:  # free once the first is done
        assert again.directory.is_dir() and not again.holds_work()


@pytest.mark.parametrize("whole", [TRUCK_MF4, CAR_MF4], ids=["unfinalised", "finalised"])
def test_mf4_cut_anywhere_but_between_records_is_seen_as_truncated(tmp_path: Path,
                                                                   whole: Path) -> None:
    check_log(whole)  # the shared recordings are whole
    data = whole.read_bytes()
    cut = tmp_path / "cut.mf4"
    caught = 0
    cuts = [len(data) * k // 97 for k in range(1, 97)]
    for end in cuts:
        cut.write_bytes(data[:end])
        try:
            check_log(cut)
        except LogFormatError as exc:
            assert "is truncated" in str(exc) or "is corrupt" in str(exc)
            caught += 1
    # An unfinalised file cut exactly between two records is a shorter recording; any other
    # cut is caught.
    assert caught >= len(cuts) - 8


def test_blf_cut_anywhere_is_seen_as_truncated(tmp_path: Path) -> None:
    data = _blf(tmp_path / "whole.blf")
    check_log(tmp_path / "whole.blf")
    cut = tmp_path / "cut.blf"
    for end in range(1, len(data), max(1, len(data) // 50)):
        cut.write_bytes(data[:end])
        with pytest.raises(LogFormatError, match="is truncated"):
            check_log(cut)

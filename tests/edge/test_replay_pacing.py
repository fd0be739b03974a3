"""How a paced raw replay hands frames out: whole rounds, one per wake interval.

The pacing is checked against a simulated clock (the replay's ``time`` replaced by one that
only moves when the reader sleeps or the test says work took time), so every assertion is
about which frames come out in which round, never about how fast this machine is.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from edge import source as source_module
from edge.logfile import RawFrame, read_raw
from edge.source import _RAW_WAKE_S, ReplaySource

FPS = 4500


class SimulatedClock:
    """``time.monotonic`` and ``time.sleep`` for the replay: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)

    def work(self, seconds: float) -> None:
        """The agent spent this long on a round."""
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimulatedClock:
    simulated = SimulatedClock()
    monkeypatch.setattr(source_module, "time", simulated)
    return simulated


def _bus_log(path: Path, seconds: float, fps: int = FPS) -> Path:
    path.write_text("".join(f"({1_700_000_000 + i / fps:.6f}) can0 1A0#0102030405060708\n"
                            for i in range(int(seconds * fps))))
    return path


def _rounds(source: ReplaySource, clock: SimulatedClock,
            work_s: float) -> list[tuple[float, list[RawFrame]]]:
    """Read until the end, the agent taking ``work_s`` per round: (time, frames) per round."""
    rounds = []
    while not source.exhausted:
        frames = source.recv_raw(timeout=0.1)
        if frames:
            rounds.append((clock.now, frames))
            clock.work(work_s)
    return rounds


def test_frames_that_come_due_during_a_round_wait_for_the_next_wake(
        tmp_path: Path, clock: SimulatedClock) -> None:
    log = _bus_log(tmp_path / "bus.log", 2.0)
    source = ReplaySource([log], speed=1.0)
    rounds = _rounds(source, clock, work_s=0.004)
    times = [at for at, _ in rounds]
    # One round per wake interval: no mini-round of the frames due while the last one ran.
    assert all(b - a >= _RAW_WAKE_S - 1e-9 for a, b in pairwise(times))
    assert len(rounds) <= 2.0 / _RAW_WAKE_S + 1
    handed = [frame for _, frames in rounds for frame in frames]
    assert handed == [f for chunk in read_raw(log) for f in chunk]  # all, in order, once
    first_ts, started = 1_700_000_000.0, times[0]
    for at, frames in rounds:  # none before it is due
        assert all(started + (ts - first_ts) <= at + 1e-6 for ts, _, _ in frames)


def test_a_round_goes_on_across_the_readers_chunks(tmp_path: Path,
                                                    clock: SimulatedClock) -> None:
    log = _bus_log(tmp_path / "bus.log", 3.0)
    chunks = [len(chunk) for chunk in read_raw(log)]
    assert len(chunks) > 5  # the file is read in several chunks
    source = ReplaySource([log], speed=1.0)
    rounds = _rounds(source, clock, work_s=0.004)
    # Every round holds what came due in one interval (225 frames here), the chunk
    # boundaries (every ~1,000 frames) included: no round is cut in two by one.
    sizes = [len(frames) for _, frames in rounds[1:-1]]
    assert min(sizes) >= FPS * _RAW_WAKE_S - 2
    assert sum(len(frames) for _, frames in rounds) == sum(chunks) == source.position


def test_a_reader_that_falls_behind_gets_the_next_round_at_once(
        tmp_path: Path, clock: SimulatedClock) -> None:
    log = _bus_log(tmp_path / "bus.log", 1.0)
    source = ReplaySource([log], speed=1.0)
    rounds = _rounds(source, clock, work_s=0.08)  # each round takes longer than an interval
    assert clock.sleeps == []  # never waited: always frames overdue
    assert len(rounds) < 1.0 / _RAW_WAKE_S
    assert sum(len(frames) for _, frames in rounds) == FPS


def test_a_round_stops_at_the_limit_and_the_rest_follows_at_once(
        tmp_path: Path, clock: SimulatedClock) -> None:
    log = _bus_log(tmp_path / "bus.log", 1.0)
    source = ReplaySource([log], speed=1.0)
    assert len(source.recv_raw(timeout=0.1)) == 1  # the first frame starts the clock
    clock.work(0.5)  # 2,250 frames are overdue now
    sizes = [len(source.recv_raw(timeout=0.1, limit=1000)) for _ in range(3)]
    assert sizes == [1000, 1000, 250]
    assert clock.sleeps == []


def test_a_drain_without_waiting_takes_what_is_due(tmp_path: Path,
                                                   clock: SimulatedClock) -> None:
    log = _bus_log(tmp_path / "bus.log", 1.0)
    source = ReplaySource([log], speed=1.0)
    assert source.recv_raw(timeout=0.1)
    clock.work(0.01)
    # Within the wake interval, but a zero timeout (the agent's last read before it stops)
    # hands out what is due instead of waiting for the next wake.
    assert len(source.recv_raw(timeout=0)) == pytest.approx(FPS * 0.01, abs=2)
    assert source.recv_raw(timeout=0) == []

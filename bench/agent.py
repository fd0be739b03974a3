"""Benchmark: the edge agent's per-frame cost against bare cantools decoding, same run.

Frames come from the fleet simulator (a real mix of the reference bus's messages). The
reference is a plain loop of ``Message.decode_simple`` over the same frames; the agent run
decodes, maps to VSS names, batches and writes the batches to an on-disk spool (fsync off:
this measures CPU, not the disk), once frame by frame (``Agent.process``, the path taken with
frame taps or a live python-can bus) and once in blocks of raw frames (``Agent.process_raw``,
a replay's path: compiled sinks). Prints one JSON object; figures are ratios to the
reference so that a noisy, shared machine still gives comparable numbers.

    .venv/bin/python bench/agent.py [--days 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import can
import orjson

# bench/edge.py would shadow the edge package when this script's folder leads sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge.agent import Agent
from edge.config import REFERENCE_RULES
from edge.decode import Decoder
from edge.logfile import RawFrame, to_raw
from edge.rules import load_rules
from edge.sim.simulator import VehicleSimulator, load_reference_dbc, make_fleet
from edge.spool import Spool

START_TS = 1_767_225_600.0


def _frames(days: int) -> list[can.Message]:
    db = load_reference_dbc()
    frames: list[can.Message] = []
    for spec in make_fleet(2, seed=1):
        sim = VehicleSimulator(spec, db, start_ts=START_TS, days=days, snapshot_s=1.0)
        for day in sim.iter_days():
            frames.extend(day)
    return frames


def _bare_cantools(frames: list[can.Message]) -> float:
    """Seconds of a bare ``decode_simple`` loop; frames of ids the DBC does not know (the
    simulator's OBD-II requests) are passed over, as the agent counts them and moves on."""
    by_id = {m.frame_id: m for m in load_reference_dbc().messages}
    started = time.perf_counter()
    for frame in frames:
        message = by_id.get(frame.arbitration_id)
        if message is not None:
            message.decode_simple(bytes(frame.data), decode_choices=False)
    return time.perf_counter() - started


def _agent(frames: list[can.Message], spool_dir: Path) -> float:
    db = load_reference_dbc()
    bus = can.Bus(interface="virtual", channel=f"bench-{uuid.uuid4().hex}")
    spool = Spool(spool_dir / uuid.uuid4().hex, fsync=False)
    agent = Agent("BENCH", bus, Decoder([db]), load_rules(REFERENCE_RULES), spool, None)
    started = time.perf_counter()
    for frame in frames:
        agent.process(frame)
    agent.flush()
    elapsed = time.perf_counter() - started
    bus.shutdown()
    return elapsed


def _agent_raw(frames: list[RawFrame], spool_dir: Path, block: int = 1024) -> float:
    db = load_reference_dbc()
    spool = Spool(spool_dir / uuid.uuid4().hex, fsync=False)
    agent = Agent("BENCH", None, Decoder([db]), load_rules(REFERENCE_RULES),  # type: ignore[arg-type]
                  spool, None)
    blocks = [frames[i:i + block] for i in range(0, len(frames), block)]
    started = time.perf_counter()
    for chunk in blocks:
        agent.process_raw(chunk)
    agent.flush()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    frames = _frames(args.days)
    raw = [to_raw(frame) for frame in frames]
    bare, agent, fast = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            bare.append(_bare_cantools(frames))
            agent.append(_agent(frames, Path(tmp)))
            fast.append(_agent_raw(raw, Path(tmp)))
    bare_s, agent_s = statistics.median(bare), statistics.median(agent)
    fast_s = statistics.median(fast)
    result = {
        "benchmark": "edge agent vs bare cantools decode_simple",
        "frames": len(frames),
        "repeat": args.repeat,
        "reference_frames_per_s": round(len(frames) / bare_s),
        "agent_frames_per_s": round(len(frames) / agent_s),
        "agent_to_reference_ratio": round(bare_s / agent_s, 3),
        "full_bus_frames_per_s": 4500,
        "agent_headroom_vs_full_500k_bus": round(len(frames) / agent_s / 4500, 1),
        "agent_raw_blocks_frames_per_s": round(len(frames) / fast_s),
        "agent_raw_blocks_to_reference_ratio": round(bare_s / fast_s, 3),
    }
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

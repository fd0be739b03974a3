"""Benchmark: what the diagnostic taps (OBD-II, J1939, UDS) add to the agent, same run.

Frames are three real recordings from ``../shared/data/can`` (a car's OBD-II answers with GNSS
frames, a truck's J1939 traffic with transport, a Nissan Leaf's UDS battery reads), held in
memory. The reference is the agent without taps on the same frames; the measured run adds
``make_taps(["obd", "j1939", "uds"])``. Spool fsync is off: this measures CPU, not the disk.
Also reported: the taps alone, without the agent. Prints one JSON object.

    .venv/bin/python bench/diag_taps.py [--repeat 5]
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

from edge.agent import Agent
from edge.config import REFERENCE_DBC, REFERENCE_RULES
from edge.decode import Decoder, load_dbcs
from edge.diag.taps import make_taps
from edge.rules import load_rules
from edge.spool import Spool

LOGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "can"
FILES = ("car_obd2_gnss/00000002-60FE415D.candump.log",
         "truck_j1939_tp/00000001-60B621D9.candump.log", "leaf_2019_uds/00000001.candump.log")


def _agent(frames: list[can.Message], spool_dir: Path, taps: list[str]) -> float:
    bus = can.Bus(interface="virtual", channel=f"bench-{uuid.uuid4().hex}")
    spool = Spool(spool_dir / uuid.uuid4().hex, fsync=False)
    agent = Agent("BENCH", bus, Decoder(load_dbcs([REFERENCE_DBC])),
                  load_rules(REFERENCE_RULES), spool, None, taps=make_taps(taps))
    started = time.perf_counter()
    for frame in frames:
        agent.process(frame)
    agent.flush()
    elapsed = time.perf_counter() - started
    bus.shutdown()
    return elapsed


def _taps_alone(frames: list[can.Message]) -> float:
    taps = make_taps(["obd", "j1939", "uds"])
    started = time.perf_counter()
    for frame in frames:
        for tap in taps:
            tap.feed(frame)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    frames = [f for name in FILES for f in can.LogReader(str(LOGS / name))]
    plain, tapped, alone = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            plain.append(_agent(frames, Path(tmp), []))
            tapped.append(_agent(frames, Path(tmp), ["obd", "j1939", "uds"]))
            alone.append(_taps_alone(frames))
    plain_s, tapped_s = statistics.median(plain), statistics.median(tapped)
    alone_s = statistics.median(alone)
    result = {
        "benchmark": "edge agent with diagnostic taps vs the same agent without taps",
        "frames": len(frames),
        "repeat": args.repeat,
        "reference_agent_frames_per_s": round(len(frames) / plain_s),
        "agent_with_taps_frames_per_s": round(len(frames) / tapped_s),
        "with_taps_to_reference_ratio": round(plain_s / tapped_s, 3),
        "taps_alone_frames_per_s": round(len(frames) / alone_s),
        "full_bus_frames_per_s": 4500,
        "agent_with_taps_headroom_vs_full_500k_bus": round(len(frames) / tapped_s / 4500, 1),
    }
    print(orjson.dumps(result).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The agent's fast path (raw frames, compiled sinks) spools exactly what the general path does.

Every shared recording and a synthetic reference-bus log go through two agents: one fed
python-can messages frame by frame (:meth:`Agent.process`), one fed raw frames in blocks
(:meth:`Agent.process_raw`). Their spools must hold the same samples in the same order, the
same fault-code events, and their counters must agree, under the reference rules and under
rules that drop unmapped signals, window some signals and watch cranking.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.agent import Agent
from edge.config import REFERENCE_DBC, REFERENCE_RULES
from edge.decode import Decoder, load_dbcs
from edge.logfile import read_log, read_raw
from edge.rules import load_rules
from edge.source import ReplaySource
from edge.spool import Spool

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CASES = [
    (SHARED / "can" / "kona_2018" / "turnonlog.log", SHARED / "dbc" / "hyundai_kia_generic.dbc"),
    (SHARED / "can" / "subaru_wrx" / "cruise.log",
     SHARED / "dbc" / "subaru_outback_2015_generated.dbc"),
    (SHARED / "can" / "truck_j1939_tp" / "00000001-60B621D9.candump.log",
     SHARED / "dbc" / "CSS-Electronics-SAE-J1939-DEMO.dbc"),
]

NARROW_RULES = '''
vss_version = "4.0"
publish_unmapped = false
[dtc]
message = "DIAG_DtcReport"
code_signal = "DtcCode"
status_signal = "DtcStatus"
ecu_signal = "EcuAddress"
[cranking]
voltage = "BCM_LowVoltage.LvBatteryVoltage"
engine_speed = "ECM_Engine.EngineSpeed"
[[signal]]
dbc = "ESC_WheelSpeeds.WheelSpeed_FL"
vss = "Vehicle.Chassis.Axle.Row1.Wheel.Left.Speed"
scale = 0.2777777777777778
[[signal]]
dbc = "ESC_WheelSpeeds.WheelSpeed_RR"
vss = "Speed.RR"
offset = -1.5
[[signal]]
dbc = "BMS_PackStatus.PackCurrent"
vss = "Pack.Current"
mode = "window"
window_s = 0.5
[[signal]]
dbc = "BMS_CellVoltages.Cell01_Voltage"
vss = "Cell01"
[[signal]]
dbc = "VCU_Motion.VehicleSpeed"
vss = "Vehicle.Speed"
'''


def _reference_log(path: Path, frames: int = 6000) -> Path:
    """A random mix of the reference DBC's messages, payloads from all-random bytes."""
    db = load_dbcs([REFERENCE_DBC])[0]
    rng = random.Random(7)
    with open(path, "w", encoding="ascii") as out:
        for i in range(frames):
            message = rng.choice(db.messages)
            size = message.length if rng.random() > 0.01 else rng.randrange(0, 12)
            data = bytes(rng.randrange(256) for _ in range(size))
            if message.name == "DIAG_DtcReport":
                data = bytes([0x0A, rng.choice([0x80, 0x81]), rng.randrange(3), 0x10, 0, 0, 0, 0])
            out.write(f"({1_700_000_000 + i / 1000:.6f}) can0 {message.frame_id:03X}#"
                      f"{data.hex().upper()}\n")
        out.write("(1700000100.000000) can0 7FF#00\n(1700000100.001000) can0 123#R\n")
    return path


def _spooled(spool: Spool) -> list[dict[str, Any]]:
    out = []
    for seq in spool.pending():
        entry = spool.read(seq)
        assert entry is not None
        body = orjson.loads(entry.payload)
        body.pop("msg_id")
        out.append(body)
    return out


def _run_both(log: Path, dbcs: list[Path], rules_path: Path, tmp: Path,
              batch_signals: int) -> None:
    results = []
    for raw in (False, True):
        spool = Spool(tmp / f"spool-{raw}", fsync=False)
        agent = Agent("V1", ReplaySource([log]), Decoder(load_dbcs(dbcs, lenient_fallback=True)),
                      load_rules(rules_path), spool, None, batch_signals=batch_signals)
        if raw:
            for frames in read_raw(log, chunk=97):
                agent.process_raw(frames)
        else:
            for frame in read_log(log):
                agent.process(frame)
        agent.finish()
        results.append((_spooled(spool), agent.stats()))
        spool.close()
    (general, general_stats), (fast, fast_stats) = results
    assert fast_stats == general_stats
    assert fast == general
    assert general_stats.signals_spooled > 0


@pytest.mark.parametrize(("log", "dbc"), CASES, ids=[c[0].parent.name for c in CASES])
def test_fast_path_equals_general_path_on_shared_logs(log: Path, dbc: Path,
                                                      tmp_path: Path) -> None:
    _run_both(log, [dbc], REFERENCE_RULES, tmp_path, 500)


@pytest.mark.parametrize("batch_signals", [1, 37, 500])
def test_fast_path_equals_general_path_on_the_reference_bus(batch_signals: int,
                                                            tmp_path: Path) -> None:
    log = _reference_log(tmp_path / "ref.log")
    _run_both(log, [REFERENCE_DBC], REFERENCE_RULES, tmp_path / "wide", batch_signals)
    rules = tmp_path / "narrow.toml"
    rules.write_text(NARROW_RULES)
    _run_both(log, [REFERENCE_DBC], rules, tmp_path / "narrow", batch_signals)


def test_a_checkpoint_never_covers_frames_still_in_hand(tmp_path: Path) -> None:
    """With many frames read at once, each append's checkpoint counts only processed frames."""
    log = _reference_log(tmp_path / "ref.log", frames=3000)
    source = ReplaySource([log])
    spool = Spool(tmp_path / "spool", fsync=False)
    agent = Agent("V1", source, Decoder(load_dbcs([REFERENCE_DBC])),
                  load_rules(REFERENCE_RULES), spool, None, batch_signals=50)
    seen: list[tuple[int, int]] = []
    append_many = spool.append_many

    def spy(messages: list[tuple[str, bytes, Any]], **kw: Any) -> list[int]:
        samples = sum(len(orjson.loads(payload).get("ts", [])) for _, payload, _ in messages)
        seen.append((kw["checkpoint"][1], samples))
        return append_many(messages, **kw)

    spool.append_many = spy  # type: ignore[method-assign,assignment]
    agent.run(threading.Event())
    positions = [p for p, _ in seen]
    assert positions == sorted(positions) and positions[-1] == source.position
    # Resuming from any checkpoint and replaying the rest spools every signal exactly once.
    first_half = positions[len(positions) // 2]
    resumed = ReplaySource([log])
    assert resumed.skip(first_half) == first_half
    spool2 = Spool(tmp_path / "spool2", fsync=False)
    agent2 = Agent("V1", resumed, Decoder(load_dbcs([REFERENCE_DBC])),
                   load_rules(REFERENCE_RULES), spool2, None, batch_signals=50)
    agent2.run(threading.Event())
    before = sum(n for p, n in seen if p <= first_half)
    assert before + agent2.stats().signals_spooled == agent.stats().signals_spooled

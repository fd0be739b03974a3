"""Helpers for the replay end-to-end tests: the shared logs, expected counts, the store."""

from __future__ import annotations

from pathlib import Path

from edge.config import REFERENCE_RULES
from edge.decode import Decoder, load_dbcs
from edge.rules import load_rules
from edge.source import ReplaySource
from edge.spool import Spool
from pipeline.store import connection as store

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CAN = SHARED / "can"
DBC = SHARED / "dbc"
KONA_LOG = CAN / "kona_2018" / "turnonlog.log"
KONA_DBC = DBC / "hyundai_kia_generic.dbc"


def expected_signals(logs: list[Path], dbcs: list[Path], tmp: Path) -> int:
    """What an uninterrupted agent spools for these logs (no taps, the reference rules)."""
    from edge.agent import Agent

    source = ReplaySource(logs)
    spool = Spool(tmp, fsync=False)
    agent = Agent("EXPECTED", source, Decoder(load_dbcs(dbcs, lenient_fallback=True)),
                  load_rules(REFERENCE_RULES), spool, None)
    while not source.exhausted:
        frame = source.recv(timeout=0)
        if frame is not None:
            agent.process(frame)
    agent.finish()
    spool.close()
    return agent.stats().signals_spooled


def rows_of(db_path: Path, vehicle_id: str) -> tuple[int, int]:
    """(telemetry rows, distinct wire messages) landed for one vehicle."""
    with store.connect_readonly(db_path) as con:
        rows = con.execute("SELECT count(*), count(DISTINCT msg_id) FROM telemetry "
                           "WHERE vehicle_id = ?", [vehicle_id]).fetchone()
    assert rows is not None
    return int(rows[0]), int(rows[1])


def edge_replay_command(logs: list[Path], dbcs: list[Path], broker_url: str, vehicle: str,
                        spool_dir: Path, *extra: str) -> list[str]:
    """``python -m flows.cli.main edge replay ...`` as flows/cli/replay.py runs it."""
    import sys

    return [sys.executable, "-m", "flows.cli", "edge", "replay", *map(str, logs),
            *[arg for dbc in dbcs for arg in ("--dbc", str(dbc))],
            "--broker", broker_url, "--vehicle", vehicle,
            "--spool-dir", str(spool_dir), "--taps", "", *extra]

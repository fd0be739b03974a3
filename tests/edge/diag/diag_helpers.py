"""Shared helpers for the diagnostics tests: paths, an agent on a virtual bus, the emulator.

ELM327-emulator (CC-BY-NC-SA-4.0) is a test-only dependency: it runs as a subprocess here and
is never imported by fleetcare itself.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import can

from edge.agent import Agent, FrameTap
from edge.config import REFERENCE_DBC, REFERENCE_RULES
from edge.decode import Decoder, load_dbcs
from edge.rules import load_rules
from edge.spool import Spool
from edge.wire import contract
from tests.polling import wait_until

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data" / "can"
OBD_LOG = SHARED / "car_obd2_gnss" / "00000002-60FE415D.candump.log"
J1939_LOG = SHARED / "truck_j1939_tp" / "00000001-60B621D9.candump.log"
LEAF_LOG = SHARED / "leaf_2019_uds" / "00000001.candump.log"



def channel() -> str:
    """A virtual CAN channel name no other test uses."""
    return f"diag-{uuid.uuid4().hex}"


def make_agent(bus: can.BusABC, spool_dir: Path, taps: Sequence[FrameTap],
               vehicle: str = "VDIAG") -> tuple[Agent, Spool]:
    """A real agent with the reference DBC and rules, spooling to ``spool_dir``."""
    spool = Spool(spool_dir)
    agent = Agent(vehicle, bus, Decoder(load_dbcs([REFERENCE_DBC])),
                  load_rules(REFERENCE_RULES), spool, None, batch_signals=100_000, taps=taps)
    return agent, spool


def spooled(spool: Spool) -> list[contract.Message]:
    """Every message waiting in the spool, decoded with the wire contract."""
    out = []
    for seq in spool.pending():
        entry = spool.read(seq)
        if entry is not None:
            out.append(contract.decode(entry.payload))
    return out


def samples(messages: Sequence[contract.Message]) -> list[tuple[float, str, float]]:
    """All telemetry samples in ``messages``."""
    return [s for m in messages if isinstance(m, contract.TelemetryBatch)
            for s in zip(m.ts, m.signal, m.value, strict=True)]


def dtc_events(messages: Sequence[contract.Message]) -> list[contract.DtcEvent]:
    """All fault-code events in ``messages``."""
    return [e for m in messages if isinstance(m, contract.DtcBatch) for e in m.events]


LAUNCH = """
import json, sys
from elm import interpreter, obd_message
cfg = json.loads(sys.argv[1])
obd_message.DTC_STORED[:] = cfg["stored"]
obd_message.DTC_PENDING[:] = cfg["pending"]
obd_message.DTC_PERMANENT[:] = cfg["permanent"]
net = ["-n", str(cfg["port"])] if cfg["port"] else []
sys.argv = ["elm", "-s", "car", "-b", cfg["out"], *net]
interpreter.main()
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def elm_emulator(tmp: Path, *, tcp: bool, stored: Sequence[str] = (),
                 pending: Sequence[str] = (), permanent: Sequence[str] = ()) -> Iterator[str]:
    """Run ELM327-emulator; yield ``socket://127.0.0.1:PORT`` or the pty's path."""
    import json

    out = tmp / f"elm-{uuid.uuid4().hex[:6]}.out"
    port = free_port() if tcp else 0
    cfg = {"stored": list(stored), "pending": list(pending), "permanent": list(permanent),
           "out": str(out), "port": port}
    proc = subprocess.Popen([sys.executable, "-c", LAUNCH, json.dumps(cfg)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp)
    try:
        url = _wait_ready(proc, out, port)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_ready(proc: subprocess.Popen[bytes], out: Path, port: int) -> str:
    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"ELM327-emulator exited with {proc.returncode}")
        if port:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        return out.exists() and out.read_text().startswith("/dev/")

    if not wait_until(ready, timeout=30):
        raise RuntimeError("ELM327-emulator did not start within 30 s")
    return f"socket://127.0.0.1:{port}" if port else out.read_text().splitlines()[0].strip()

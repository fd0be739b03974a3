"""``fleetcare ingest`` as a process against real mosquitto: memory bounded by bytes under a
flood of oversize messages, and a retained message dead-lettered once across restarts.

The broker is the project's own (:class:`pipeline.broker.harness.EmbeddedBroker`, the
configuration ``fleetcare broker`` runs), one per test so nothing retained or queued here
reaches other tests. That configuration already refuses a payload over the contract's limit
(``message_size_limit``); the flood test lifts that one setting, as a broker fleetcare did
not configure would, to show that ingest stays bounded on its own. Progress is read from
ingest's log lines; counts from the store once ingest has stopped (DuckDB lets no one else
open it while ingest writes).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.wire import contract
from pipeline.broker.auth import parse_broker_url
from pipeline.broker.harness import EmbeddedBroker, find_mosquitto
from pipeline.broker.limits import DEFAULT_LIMITS
from pipeline.ingest.landing import KEPT_BYTES
from pipeline.store import connection as store
from tests.background import Background
from tests.processes import cli

pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")]

T0 = 1_767_225_600.0
SIGNALS = 50
WAIT_S = 180.0
"""Longest wait for any one outcome: generous, so a loaded machine is slow, not failing."""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(prefer="mosquitto", data_dir=tmp_path / "mq") as running:
        yield running


@pytest.fixture
def unlimited_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """The project's broker without its message size limit (0: mosquitto's own maximum)."""
    limits = replace(DEFAULT_LIMITS, message_size_limit=0)
    with EmbeddedBroker(prefer="mosquitto", data_dir=tmp_path / "mq", limits=limits) as running:
        yield running


class IngestProcess(Background):
    """``fleetcare -v ingest`` in its own process (killed after ``4 * WAIT_S`` should it hang),
    and how much memory it holds."""

    def __init__(self, broker_url: str, db_path: Path, client_id: str) -> None:
        super().__init__(cli("-v", "ingest", "--no-urgent", "--broker", broker_url, "--db",
                             str(db_path), "--client-id", client_id, "--allow-unregistered",
                             "--rate-limit", "0", "--flush-interval", "0.2"),
                         name="fleetcare ingest", wait_s=WAIT_S, watchdog_s=4 * WAIT_S)

    def memory_kib(self, field: str) -> int:
        """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of the ingest process."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines()
                    if line.startswith(field + ":"))

    def stop(self, timeout: float = WAIT_S) -> int:
        """SIGTERM (ingest lands and acks what it holds, then exits); the exit status."""
        return super().stop(timeout)


def publish(url: str, wires: Sequence[tuple[str, bytes]], retain: bool = False) -> None:
    """Publish at QoS 1, in order on one connection; return once the broker has every one."""
    host, port = parse_broker_url(url)
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.max_queued_messages_set(0)
    client.on_connect = lambda *_: connected.set()
    client.connect(host, port)
    client.loop_start()
    try:
        assert connected.wait(WAIT_S)
        infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload in wires]
        for info in infos:
            info.wait_for_publish(timeout=WAIT_S)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def telemetry(msg_id: str, vehicle: str) -> tuple[str, bytes]:
    batch = contract.TelemetryBatch(msg_id, vehicle, [T0 + i for i in range(SIGNALS)],
                                    [f"Vehicle.S{i}" for i in range(SIGNALS)],
                                    [float(i) for i in range(SIGNALS)])
    return contract.telemetry_topic(vehicle), contract.encode(batch)


OVERSIZE_BYTES = 20_000_000
FLOOD = 10
"""Oversize messages in the flood: 200 MB, which ingest held whole (and more than once)
before it cut them on the way in."""
EXTRA_PEAK_MIB = 150
"""How far ingest's peak RSS may rise above its idle RSS during the flood (measured on the
2-core test machine: about 20 MiB; before oversize messages were cut on the way in, this
flood took it up by about 320 MiB)."""


def test_an_oversize_flood_keeps_heads_and_ingest_memory_stays_bounded(
        unlimited_broker: EmbeddedBroker, tmp_path: Path) -> None:
    broker = unlimited_broker
    db_path = tmp_path / "fleet.duckdb"
    body = b"x" * OVERSIZE_BYTES
    big = [b"%02d" % i + body[2:] for i in range(FLOOD)]  # same size, different hashes
    topic = contract.telemetry_topic("VBIG")
    normal = [telemetry(f"n{i}", f"VN{i % 5}") for i in range(30 * FLOOD)]
    flood = [w for i, w in enumerate(normal)
             for w in ([w, (topic, big[i // 30])] if i % 30 == 29 else [w])]
    assert flood[-1][0] == topic  # the last one: once it is dead-lettered, all have arrived

    ingest = IngestProcess(broker.url, db_path, f"flood-{uuid.uuid4().hex[:8]}")
    try:
        ingest.wait_for_text("ingesting")
        idle_kib = ingest.memory_kib("VmRSS")
        publish(broker.url, flood)
        ingest.wait_for_text(f"dead-lettering a message on {topic}", count=FLOOD)
        peak_kib = ingest.memory_kib("VmHWM")
    finally:
        assert ingest.stop() == 0

    assert (peak_kib - idle_kib) / 1024 < EXTRA_PEAK_MIB, (idle_kib, peak_kib)
    with store.connect_readonly(db_path) as con:
        assert con.execute("SELECT count(*), count(DISTINCT msg_id) FROM telemetry"
                           ).fetchone() == (len(normal) * SIGNALS, len(normal))
        letters = con.execute("SELECT payload, payload_bytes, payload_sha256, reason "
                              "FROM dead_letters ORDER BY id").fetchall()
    assert [(bytes(p), n, h) for p, n, h, _ in letters] == [
        (b[:KEPT_BYTES], OVERSIZE_BYTES, hashlib.sha256(b).hexdigest()) for b in big]
    assert all(r.startswith(f"oversize: payload of {OVERSIZE_BYTES} bytes") for *_, r in letters)

    replay = subprocess.run([sys.executable, "-m", "flows.cli", "deadletter", "replay",
                             "--db", str(db_path)], capture_output=True, text=True,
                            timeout=WAIT_S, check=False)
    assert replay.returncode == 0, replay.stderr
    assert orjson.loads(replay.stdout)["dead_letters"] == FLOOD
    why = replay.stderr.strip().splitlines()
    assert len(why) == FLOOD and all("cannot be replayed" in line for line in why), why


def test_a_retained_message_is_dead_lettered_once_across_restarts(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    db_path = tmp_path / "fleet.duckdb"
    topic, payload = telemetry("r1", "VRET")
    doc = orjson.loads(payload)
    doc["value"] = [True, *doc["value"][1:]]  # a producer sending a boolean as telemetry
    # Retained before ingest ever ran: the broker hands it over at every subscription.
    publish(broker.url, [(topic, orjson.dumps(doc))], retain=True)
    client_id = f"retained-{uuid.uuid4().hex[:8]}"

    outcomes = []
    for _ in range(2):  # the first start keeps it, the next is a repeat (as are all later)
        ingest = IngestProcess(broker.url, db_path, client_id)
        try:
            [line] = ingest.wait_for_text(f"dead-lettering a message on {topic}",
                                          "is already a dead letter")
            outcomes.append("kept" if "dead-lettering" in line else "repeat")
        finally:
            assert ingest.stop() == 0

    assert outcomes == ["kept", "repeat"]
    with store.connect_readonly(db_path) as con:
        assert con.execute("SELECT count(*) FROM telemetry").fetchone() == (0,)
        [(reason, kept)] = con.execute("SELECT reason, payload FROM dead_letters").fetchall()
    assert "value[0] = true is a boolean, not a number" in reason
    assert bytes(kept) == orjson.dumps(doc)


@pytest.fixture(autouse=True)
def _no_crm_env() -> None:
    """Ingest runs with --no-urgent; keep a CRM configured in the environment out anyway."""
    for name in ("FLEETCARE_PIPELINE__CRM_URL", "FLEETCARE_PIPELINE__CRM_SECRET"):
        os.environ.pop(name, None)

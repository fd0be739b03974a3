"""Nothing the broker acknowledged is lost when the broker is: the store's receipts decide.

Both tests run the production parts: ``fleetcare ingest`` as its own process, the agent as
``fleetcare edge run`` assembles it (on a python-can virtual bus in this process) or as
``fleetcare edge replay``, and a real mosquitto started here with ``persistence false``,
mosquitto's default queue of 1,000 messages per offline client and the in-flight window
ingest needs (as the project's broker configurations set it). Without receipts each test
loses messages the broker had acknowledged; with them, the rows landed equal the signals
the agent spooled, and no row is stored twice.

* A ``kill -9`` of the broker mid-stream, restarted on the same port 30 s later while the
  agent keeps reading frames. Ingest is stopped just before the kill, so the broker holds
  acknowledged messages for it in memory only: the kill loses them for certain.
* An ingest outage longer than the broker's queue: more than 1,000 messages are published
  while ingest is down, the broker keeps 1,000 for it and drops the rest, saying so.
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import can
import orjson
import pytest
from can.interfaces import virtual as virtual_bus

from edge.config import load_edge_settings
from edge.decode import load_dbcs
from edge.runtime import assemble
from edge.wire import contract
from pipeline.broker.harness import find_mosquitto, free_port, wait_for_port
from pipeline.store import connection as store
from tests.contract_subscriber import ContractSubscriber
from tests.e2e.replay_helpers import (
    KONA_DBC,
    KONA_LOG,
    REPO,
    edge_replay_command,
    expected_signals,
)
from tests.pipeline.test_ingest import publish
from tests.polling import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.broker]

OUTAGE_S = 30.0
"""How long the killed broker stays down (the issue's figure)."""
RECEIPT_TIMEOUT_S, RECEIPT_TIMEOUT_MAX_S = 2.0, 4.0
"""Short receipt timeouts, so the re-sends come within the test's patience."""


class Mosquitto:
    """mosquitto without persistence on a fixed port, which can be killed and started again."""

    def __init__(self, root: Path) -> None:
        exe = find_mosquitto()
        if exe is None:
            pytest.skip("needs mosquitto: the guarantees are about its queue and its restarts")
        self.exe, self.port = exe, free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.conf, self.log = root / "mosquitto.conf", root / "mosquitto.log"
        # No max_queued_messages: mosquitto's default of 1,000 is part of what is tested.
        self.conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false",
            f"user {getpass.getuser()}", "max_inflight_messages 10000", "log_dest stderr",
            "log_type error", "log_type warning", "log_type notice", ""]), encoding="utf-8")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        with self.log.open("ab") as sink:
            self._proc = subprocess.Popen([str(self.exe), "-c", str(self.conf)], stdout=sink,
                                          stderr=sink, stdin=subprocess.DEVNULL)
        assert wait_for_port("127.0.0.1", self.port, 20), self.log.read_text()
        return self

    def kill_9(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(timeout=30)
        assert self._proc.returncode == -signal.SIGKILL
        self._proc = None

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=30)
            self._proc = None


class IngestProcess:
    """``fleetcare ingest`` as its own process, with a fixed client id (a persistent session)."""

    def __init__(self, broker: Mosquitto, db_path: Path, log: Path) -> None:
        self.broker, self.db_path, self.log = broker, db_path, log
        self.client_id = f"ingest-{uuid.uuid4().hex[:8]}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IngestProcess:
        """Start it (again) and return once it lands and receipts a probe vehicle's message."""
        with self.log.open("ab") as sink:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "flows.cli", "ingest", "--broker", self.broker.url,
                 "--db", str(self.db_path), "--client-id", self.client_id,
                 "--allow-unregistered", "--rate-limit", "0", "--no-urgent",
                 "--flush-interval", "0.2"], cwd=REPO, stdout=sink, stderr=sink)
        probe = f"PROBE-{uuid.uuid4().hex[:6]}"
        heard = ContractSubscriber(self.broker.url, contract.receipt_topic(probe))
        try:
            for attempt in range(120):  # until ingest has subscribed: earlier ones are lost
                assert self._proc.poll() is None, self.log.read_text()[-3000:]
                message = contract.TelemetryBatch(f"{probe}-{attempt}", probe, [time.time()],
                                                  ["Vehicle.Speed"], [0.0])
                publish(self.broker.url, [(contract.telemetry_topic(probe),
                                           contract.encode(message))])
                if heard.wait_for(lambda: bool(heard.receipts), timeout=1.0):
                    return self
            raise AssertionError(f"ingest never receipted: {self.log.read_text()[-3000:]}")
        finally:
            heard.close()

    def stop(self) -> None:
        """SIGTERM: it lands and acknowledges what it holds, then exits."""
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        self._proc.wait(timeout=60)
        assert self._proc.returncode == 0, self.log.read_text()[-3000:]
        self._proc = None


def _rows(db_path: Path, vehicle: str) -> tuple[int, int]:
    """(rows, distinct rows by message, time and signal) landed for ``vehicle``."""
    with store.connect_readonly(db_path) as con:
        found = con.execute(
            "SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT msg_id, ts, signal "
            "FROM telemetry WHERE vehicle_id = $v)) FROM telemetry WHERE vehicle_id = $v",
            {"v": vehicle}).fetchone()
    assert found is not None
    return int(found[0]), int(found[1])


class FrameSender:
    """Sends reference-bus frames on a virtual channel at a steady pace until stopped."""

    def __init__(self, channel: str) -> None:
        db = load_dbcs([REPO / "dbc" / "fleetcare_ref.dbc"])[0]
        self._motion = db.get_message_by_name("VCU_Motion")
        self._ambient = db.get_message_by_name("BCM_Ambient")
        self._bus = can.Bus(interface="virtual", channel=channel)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-sender", daemon=True)
        self.sent = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(0.01):
            i += 1
            for message, values in (
                    (self._motion, {"VehicleSpeed": i % 200, "Odometer": 1000 + i * 0.1}),
                    (self._ambient, {"AmbientTemperature": -10 + i % 40})):
                self._bus.send(can.Message(arbitration_id=message.frame_id,
                                           is_extended_id=False, data=message.encode(values)))
                self.sent += 1

    def stop(self) -> int:
        """Stop sending; returns how many frames went out."""
        self._stop.set()
        self._thread.join(timeout=10)
        self._bus.shutdown()
        return self.sent


@pytest.mark.slow
def test_kill_9_of_the_broker_mid_stream_and_a_restart_30_s_later_loses_nothing(
        tmp_path: Path, db_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    ingest = IngestProcess(broker, db_path, tmp_path / "ingest.log").start()
    vehicle, channel = f"KILL-{uuid.uuid4().hex[:6]}", f"receipts-{uuid.uuid4().hex}"
    settings = load_edge_settings(
        vehicle_id=vehicle, interface="virtual", channel=channel, broker_url=broker.url,
        spool_dir=tmp_path / "spool", spool_fsync=False, batch_signals=50,
        reconnect_min_s=1, reconnect_max_s=2, receipt_timeout_s=RECEIPT_TIMEOUT_S,
        receipt_timeout_max_s=RECEIPT_TIMEOUT_MAX_S)
    parts = assemble(settings)
    publisher = parts.publisher
    stop = threading.Event()
    reader = threading.Thread(target=parts.agent.run, args=(stop,), name="agent")
    sender = FrameSender(channel)
    publisher.start()
    reader.start()
    try:
        assert wait_until(lambda: len(virtual_bus.channels.get(channel, [])) >= 2, 30)
        sender.start()
        assert wait_until(lambda: publisher.stats().receipted >= 5, 60)  # the whole path works

        ingest.stop()  # from now on the broker alone holds what it acknowledges
        acked = publisher.stats().acked
        assert wait_until(lambda: publisher.stats().acked >= acked + 10, 60)
        broker.kill_9()
        read_at_kill = parts.agent.stats().frames_read
        stop.wait(OUTAGE_S)
        assert parts.agent.stats().frames_read > read_at_kill  # it kept reading and spooling

        broker.start()  # the same port, an empty broker: no session, no queue
        ingest.start()  # the same client id, as a deployment restarts it
        assert wait_until(lambda: publisher.stats().connects >= 2, 60)
        sent = sender.stop()
        assert wait_until(lambda: parts.agent.stats().frames_read >= sent, 60)
        stop.set()
        reader.join(timeout=60)
        assert publisher.wait_drained(180), publisher.stats()
        stats, agent = publisher.stats(), parts.agent.stats()
    finally:
        sender.stop()
        stop.set()
        reader.join(timeout=60)
        publisher.stop()
        parts.source.shutdown()
        parts.spool.close()
        ingest.stop()
        broker.stop()
    rows, distinct = _rows(db_path, vehicle)
    assert rows == agent.signals_spooled > 0  # nothing lost...
    assert distinct == rows  # ...and nothing stored twice
    assert stats.resent > 0  # what the dead broker had acknowledged went again
    assert stats.receipted == agent.messages_spooled  # every entry left on a receipt


def test_an_ingest_outage_longer_than_the_brokers_queue_loses_nothing(
        tmp_path: Path, db_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker").start()
    ingest = IngestProcess(broker, db_path, tmp_path / "ingest.log").start()
    vehicle = f"QUEUE-{uuid.uuid4().hex[:6]}"
    expected = expected_signals([KONA_LOG], [KONA_DBC], tmp_path / "expected")
    wire = ContractSubscriber(broker.url, contract.telemetry_topic(vehicle))
    # 100 signals a message: the recording makes about 1,560 messages, over the queue.
    env = {**os.environ, "FLEETCARE_EDGE__BATCH_SIGNALS": "100",
           "FLEETCARE_EDGE__SPOOL_FSYNC": "false",
           "FLEETCARE_EDGE__RECEIPT_TIMEOUT_S": str(RECEIPT_TIMEOUT_S),
           "FLEETCARE_EDGE__RECEIPT_TIMEOUT_MAX_S": str(RECEIPT_TIMEOUT_MAX_S)}
    agent: subprocess.Popen[bytes] | None = None
    try:
        ingest.stop()  # its session stays with the broker, which queues for it meanwhile
        agent = subprocess.Popen(
            edge_replay_command([KONA_LOG], [KONA_DBC], broker.url, vehicle,
                                tmp_path / "spool"), cwd=REPO, env=env, stdout=subprocess.PIPE)
        assert wire.wait_for(lambda: len({m.msg_id for m in wire.messages}) > 1200,
                             timeout=180)
        assert wait_until(lambda: "Outgoing messages are being dropped" in broker.log.read_text(),
                     60), "the broker never ran out of queue: the test proves nothing"
        ingest.start()  # the same client id, as a deployment restarts it
        out, _ = agent.communicate(timeout=300)
        assert agent.returncode == 0
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        wire.close()
        ingest.stop()
        broker.stop()
    summary = orjson.loads(out.strip().splitlines()[-1])
    rows, distinct = _rows(db_path, vehicle)
    assert summary["drained"] is True
    assert rows == summary["signals_spooled"] == expected  # nothing lost...
    assert distinct == rows  # ...and nothing stored twice
    counters = summary["counters"]
    assert counters["resent"] > 0  # what the broker dropped went again
    assert counters["receipted"] == summary["messages_spooled"]

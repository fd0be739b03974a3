"""The one-machine broker as ``fleetcare broker`` runs it keeps what it acknowledged, and the
health check sees every message a real mosquitto acknowledged and then dropped.

All on real mosquitto with the configuration the project generates; ingest is the
``fleetcare ingest`` command in its own process, and what landed is counted in its store.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import duckdb
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.wire import contract
from pipeline.broker.account import BROKER_ACCOUNT, account
from pipeline.broker.auth import parse_broker_url
from pipeline.broker.counters import BrokerCounters, read_broker_counters
from pipeline.broker.harness import EmbeddedBroker, find_mosquitto, free_port, wait_for_port
from pipeline.broker.limits import DEFAULT_LIMITS
from pipeline.ops.health import Check, check_health, record_health
from pipeline.store import connection as store
from tests.background import Background
from tests.pipeline.broker_processes import (
    FLEET,
    SIGNALS,
    WAIT_S,
    ReceiptWatcher,
    child_pids,
    close,
    connected,
    fleetcare,
    ingest,
    landed,
    publish_all,
    telemetry,
    uid_of,
    wait_for_saves,
)
from tests.polling import poll

pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")]


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the mosquitto account may enter (pytest's tmp_path sits in a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="fleetcare-durable-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)


def client(name: str, clean: bool = True) -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:8]}",
                       clean_session=clean)


def start_broker(port: int, data_dir: Path) -> tuple[Background, int]:
    """``fleetcare broker`` and the pid of the mosquitto it runs."""
    broker = fleetcare("broker", "--port", str(port), "--broker-kind", "mosquitto",
                       "--data-dir", str(data_dir), "--fleet-size", str(FLEET))
    poll("the broker's port", lambda: wait_for_port("127.0.0.1", port, 0.5))
    [mosquitto] = poll("mosquitto under fleetcare broker", lambda: child_pids(broker.process.pid))
    return broker, mosquitto


def test_fleetcare_broker_runs_as_mosquitto_and_a_stopped_ingests_queue_survives_kill_9(
        open_dir: Path) -> None:
    vehicle, client_id = "VDURABLE", f"durable-{uuid.uuid4().hex[:8]}"
    port, data, db_path = free_port(), open_dir / "broker", open_dir / "fleet.duckdb"
    url = f"mqtt://127.0.0.1:{port}"
    wires = [telemetry(f"q{i}", vehicle) for i in range(30)]
    broker, mosquitto = start_broker(port, data)
    try:
        broker_account = account(BROKER_ACCOUNT)
        if os.geteuid() == 0 and broker_account is not None:  # root: it drops to its own user
            assert uid_of(mosquitto) == broker_account.uid
            assert poll("a first save", lambda: (data / "mosquitto.db").exists())
            assert (data / "mosquitto.db").stat().st_uid == broker_account.uid

        # Ingest's persistent session exists, ingest is down, and the broker acknowledges 30.
        first = ingest(url, db_path, client_id)
        first.wait_for_text("ingesting")
        assert first.stop() == 0
        publisher = connected(client("pub"), "127.0.0.1", port)
        publish_all(publisher, wires)
        close(publisher)
        wait_for_saves(data / "mosquitto.db")
        os.kill(mosquitto, signal.SIGKILL)
        broker.stop()

        broker, mosquitto = start_broker(port, data)
        watcher = ReceiptWatcher(client("receipts"), vehicle, "127.0.0.1", port)
        second = ingest(url, db_path, client_id)
        try:
            poll("receipts for all 30", lambda: watcher.has([f"q{i}" for i in range(30)]))
        finally:
            assert second.stop() == 0
            watcher.close()
    finally:
        broker.stop()
    assert landed(db_path, vehicle) == (30 * SIGNALS, 30)


def broker_check(con: duckdb.DuckDBPyConnection, read: Callable[[], BrokerCounters]) -> Check:
    """Run the health checks with ``read`` as the broker reader; record; the broker's check."""
    report = check_health(con, broker=read)
    record_health(con, report)
    [check] = [c for c in report.checks if c.name == "broker_dropped"]
    return check


class Listener:
    """An online subscriber: what the broker delivered on one vehicle's topics."""

    def __init__(self, vehicle: str, port: int) -> None:
        self.payloads: list[bytes] = []
        self._cond = threading.Condition()
        self.client = client("listener")
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        connected(self.client, "127.0.0.1", port)
        self.client.subscribe(f"{contract.TOPIC_ROOT}/vehicles/{vehicle}/#", qos=1)
        assert subscribed.wait(WAIT_S)

    def _on_message(self, c: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.payloads.append(bytes(msg.payload))
            self._cond.notify_all()

    def wait_for(self, payload: bytes) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: payload in self.payloads, WAIT_S)


def test_health_fails_on_each_drop_of_a_full_queue_or_an_oversize_publish(
        open_dir: Path) -> None:
    # The generated configuration with a queue of 5, and $SYS counters every second.
    limits = dataclasses.replace(DEFAULT_LIMITS, max_queued_messages=5, sys_interval_s=1)
    data, port = open_dir / "mq", free_port()
    con = store.connect(open_dir / "fleet.duckdb")
    broker = EmbeddedBroker(port=port, prefer="mosquitto", data_dir=data, limits=limits).start()
    try:
        read = partial(read_broker_counters, broker.url)
        first = read()
        assert first.version.startswith("mosquitto version")
        assert (first.dropped, first.watched) == (0, True)  # the harness runs a watcher
        healthy = broker_check(con, read)
        assert (healthy.healthy, healthy.value) == (True, 0.0)

        # An offline persistent session, and 20 messages for it: 5 queued, 15 dropped.
        offline = connected(client("offline", clean=False), "127.0.0.1", port)
        subscribed = threading.Event()
        offline.on_subscribe = lambda *a: subscribed.set()
        offline.subscribe(contract.telemetry_topic("VDROP"), qos=1)
        assert subscribed.wait(WAIT_S)
        close(offline)
        publisher = connected(client("pub"), "127.0.0.1", port)
        publish_all(publisher, [telemetry(f"d{i}", "VDROP") for i in range(20)])  # all PUBACKed
        poll("15 drops counted", lambda: (read().dropped or 0) >= 15)
        full = broker_check(con, read)
        assert (full.healthy, full.value) == (False, 15.0)
        assert "the broker dropped 15 acknowledged messages since the last check" in full.message
        again = broker_check(con, read)  # nothing new: seen once, not failing forever
        assert (again.healthy, again.value) == (True, 0.0)

        # Over the contract's size: acknowledged, and neither delivered nor queued (mosquitto
        # 2.0.11 does not count it in $SYS; the agent splits batches to stay under it).
        listener = Listener("VBIG", port)
        after = telemetry("after-big", "VBIG")
        publish_all(publisher, [(contract.telemetry_topic("VBIG"),
                                 b"x" * (contract.MAX_PAYLOAD_BYTES + 1)), after])
        assert listener.wait_for(after[1])
        assert listener.payloads == [after[1]]
        close(listener.client)
        close(publisher)

        # A restart begins a new count: 3 drops after it are 3, not 3 - 15.
        broker.stop()
        broker = EmbeddedBroker(port=port, prefer="mosquitto", data_dir=data,
                                limits=limits).start()
        publisher = connected(client("pub"), "127.0.0.1", port)
        publish_all(publisher, [telemetry(f"e{i}", "VDROP") for i in range(3)])
        close(publisher)  # the session kept its 5 through the restart: the queue is full
        poll("3 drops counted after the restart", lambda: (read().dropped or 0) >= 3)
        restarted = broker_check(con, read)
        assert (restarted.healthy, restarted.value) == (False, 3.0)
        assert "since the broker started" in restarted.message
    finally:
        broker.stop()
        con.close()


def test_a_broker_whose_counters_cannot_be_read_is_unhealthy(db_path: Path) -> None:
    port = free_port()  # nobody listens there
    con = store.connect(db_path)
    try:
        check = broker_check(con, partial(read_broker_counters, f"mqtt://127.0.0.1:{port}"))
    finally:
        con.close()
    assert (check.healthy, check.value) == (False, None)
    assert check.message.startswith("cannot read the broker's drop counter: cannot reach the "
                                    f"broker at mqtt://127.0.0.1:{port}")
    assert parse_broker_url(f"mqtt://127.0.0.1:{port}") == ("127.0.0.1", port)

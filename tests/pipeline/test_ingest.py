"""MQTT to DuckDB through a real broker: every message lands once, crashes included.

Each test that takes ``mqtt_client`` runs on both of ingest's paho clients (the fast one and
paho's stock ``Client``, see tests/pipeline/conftest.py): the guarantees hold on either.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.wire import contract
from pipeline.broker.auth import parse_broker_url
from pipeline.broker.harness import EmbeddedBroker, find_mosquitto, free_port
from pipeline.config import MqttClientKind, load_pipeline_settings
from pipeline.errors import BrokerError, TerminalPipelineError
from pipeline.ingest.admission import Vehicle, register_vehicles
from pipeline.ingest.landing import InboundMessage, LandResult, land
from pipeline.ingest.service import Ingestor, IngestStats
from pipeline.store import connection as store

pytestmark = pytest.mark.broker

T0 = 1_767_225_600.0
SIGNALS = 50
FAST: dict[str, Any] = {"flush_interval_s": 0.05}
Wire = tuple[str, bytes]


def telemetry(msg_id: str, vehicle: str = "VIN1") -> Wire:
    batch = contract.TelemetryBatch(msg_id, vehicle, [T0 + i for i in range(SIGNALS)],
                                    [f"Vehicle.S{i}" for i in range(SIGNALS)],
                                    [float(i) for i in range(SIGNALS)])
    return contract.telemetry_topic(vehicle), contract.encode(batch)


def fleet(n: int, prefix: str) -> list[Wire]:
    """``n`` messages of every kind, spread over a few vehicles."""
    wires = [telemetry(f"{prefix}-t{i}", f"VIN{i % 4}") for i in range(n)]
    wires.append((contract.dtc_topic("VIN1"), contract.encode(contract.DtcBatch(
        f"{prefix}-d", "VIN1", [contract.DtcEvent(T0, "P0A80", "stored")]))))
    wires.append((contract.truth_topic("VIN1"), contract.encode(contract.TruthRecord(
        f"{prefix}-g", "VIN1", "EV-A", "north", T0, T0 + 1,
        [contract.ComponentTruth("brakes", None, 0.5)]))))
    return wires


def publish(url: str, wires: Sequence[Wire]) -> None:
    """Publish at QoS 1 and return once the broker has acknowledged every message."""
    host, port = parse_broker_url(url)
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = lambda *_: connected.set()
    client.connect(host, port)
    client.loop_start()
    try:
        assert connected.wait(10)
        infos = [client.publish(topic, payload, qos=1) for topic, payload in wires]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def handled(n: int) -> Any:
    """Predicate: ``n`` messages have been landed, skipped as duplicates or dead-lettered."""
    return lambda s: s.messages_landed + s.duplicates + s.dead_letters >= n


def table_counts(db_path: Path) -> tuple[int, int, int, int]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        row = con.execute("SELECT (SELECT count(*) FROM telemetry), "
                          "(SELECT count(DISTINCT msg_id) FROM telemetry), "
                          "(SELECT count(*) FROM dtc_events), "
                          "(SELECT count(*) FROM ingested_messages)").fetchone()
    finally:
        con.close()
    assert row is not None
    return row[0], row[1], row[2], row[3]


REGISTERED = [Vehicle(f"VIN{i}", "EV-A", "north") for i in range(10)]


def register_fleet(db_path: Path, vehicles: Sequence[Vehicle] = REGISTERED) -> None:
    """Put ``vehicles`` in the store's register, as an operator does before they send."""
    con = store.connect(db_path)
    register_vehicles(con, vehicles)
    con.close()


@pytest.fixture(autouse=True)
def registered_fleet(db_path: Path) -> None:
    """The vehicles these tests publish for are registered before ingest starts."""
    register_fleet(db_path)


@pytest.fixture
def client_id() -> str:
    """A client id of its own, so no test inherits another's broker session."""
    return f"ingest-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def ingestor(broker_url: str, db_path: Path, client_id: str,
             mqtt_client: MqttClientKind) -> Iterator[Ingestor]:
    with Ingestor(broker_url, db_path, client_id=client_id, mqtt_client=mqtt_client,
                  **FAST) as running:
        yield running


def test_published_messages_land_exactly_once(broker_url: str, ingestor: Ingestor,
                                              db_path: Path) -> None:
    publish(broker_url, fleet(200, "a"))

    assert ingestor.wait_for(handled(202), timeout=15)
    stats = ingestor.stats
    assert (stats.messages_received, stats.messages_landed, stats.telemetry_rows,
            stats.dtc_rows, stats.truth_rows) == (202, 202, 200 * SIGNALS, 1, 1)
    assert stats.last_flush_at is not None
    ingestor.stop()
    assert table_counts(db_path) == (200 * SIGNALS, 200, 1, 202)


def test_messages_published_while_stopped_land_after_restart(
        mosquitto_url: str, db_path: Path, client_id: str, mqtt_client: MqttClientKind) -> None:
    broker_url = mosquitto_url
    Ingestor(broker_url, db_path, client_id=client_id, mqtt_client=mqtt_client,
             **FAST).start().stop()

    publish(broker_url, fleet(100, "offline"))

    with Ingestor(broker_url, db_path, client_id=client_id, mqtt_client=mqtt_client,
                  **FAST) as restarted:
        assert restarted.wait_for(handled(102), timeout=15)
        assert restarted.stats.messages_landed == 102
    assert table_counts(db_path) == (100 * SIGNALS, 100, 1, 102)


CRASHING_INGESTOR = """
import sys
from pipeline.ingest.service import Ingestor
url, db, client_id, n, kind = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ingestor = Ingestor(url, db, client_id=client_id, flush_interval_s=3600, flush_rows=10**9,
                    mqtt_client=kind)
ingestor.start()
print("subscribed", flush=True)
ingestor.wait_for(lambda s: s.messages_received >= n, 30)
print("received", ingestor.stats.messages_received, flush=True)
sys.stdin.read()
"""


def test_messages_held_by_a_killed_ingestor_are_redelivered_once(
        mosquitto_url: str, db_path: Path, client_id: str, mqtt_client: MqttClientKind) -> None:
    broker_url = mosquitto_url
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_INGESTOR, broker_url, str(db_path), client_id, "50",
         mqtt_client],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "subscribed"
        publish(broker_url, [telemetry(f"crash-{i}") for i in range(50)])
        assert child.stdout.readline().strip() == "received 50"
    finally:
        child.kill()
        child.wait()

    with Ingestor(broker_url, db_path, client_id=client_id, mqtt_client=mqtt_client,
                  **FAST) as restarted:
        assert restarted.wait_for(handled(50), timeout=15)
        assert (restarted.stats.messages_landed, restarted.stats.duplicates) == (50, 0)
    assert table_counts(db_path)[:2] == (50 * SIGNALS, 50)


def test_messages_committed_but_not_acked_are_not_landed_again(
        mosquitto_url: str, db_path: Path, client_id: str, mqtt_client: MqttClientKind) -> None:
    broker_url = mosquitto_url
    wires = [telemetry(f"acked-late-{i}") for i in range(10)]
    Ingestor(broker_url, db_path, client_id=client_id, mqtt_client=mqtt_client,
             **FAST).start().stop()
    con = store.connect(db_path)
    land(con, [InboundMessage(topic, payload, T0) for topic, payload in wires[:6]])
    con.close()
    publish(broker_url, wires)

    with Ingestor(broker_url, db_path, client_id=client_id, mqtt_client=mqtt_client,
                  **FAST) as restarted:
        assert restarted.wait_for(handled(10), timeout=15)
        assert (restarted.stats.messages_landed, restarted.stats.duplicates) == (4, 6)
    assert table_counts(db_path)[:2] == (10 * SIGNALS, 10)


def test_a_message_published_twice_lands_once(broker_url: str, ingestor: Ingestor,
                                              db_path: Path) -> None:
    wire = telemetry("twice")
    publish(broker_url, [wire])
    publish(broker_url, [wire])

    assert ingestor.wait_for(handled(2), timeout=15)
    assert (ingestor.stats.messages_landed, ingestor.stats.duplicates) == (1, 1)
    ingestor.stop()
    assert table_counts(db_path)[:2] == (SIGNALS, 1)


def test_garbage_is_dead_lettered_and_ingest_carries_on(broker_url: str, ingestor: Ingestor,
                                                        db_path: Path) -> None:
    publish(broker_url, [(contract.telemetry_topic("VIN1"), b"\xde\xad\xbe\xef"),
                         telemetry("after-garbage")])

    assert ingestor.wait_for(handled(2), timeout=15)
    assert (ingestor.stats.dead_letters, ingestor.stats.messages_landed) == (1, 1)
    publish(broker_url, [telemetry("later")])
    assert ingestor.wait_for(lambda s: s.messages_landed == 2, timeout=15)
    ingestor.stop()
    con = duckdb.connect(str(db_path), read_only=True)
    assert con.execute("SELECT payload, reason LIKE '%not valid JSON%' FROM dead_letters"
                       ).fetchall() == [(b"\xde\xad\xbe\xef", True)]
    con.close()


def test_a_full_batch_flushes_before_its_interval(broker_url: str, db_path: Path,
                                                  client_id: str,
                                                  mqtt_client: MqttClientKind) -> None:
    with Ingestor(broker_url, db_path, client_id=client_id, flush_rows=10 * SIGNALS,
                  flush_interval_s=3600, mqtt_client=mqtt_client) as ingestor:
        publish(broker_url, [telemetry(f"full-{i}") for i in range(10)])

        assert ingestor.wait_for(lambda s: s.messages_landed == 10, timeout=15)


def test_a_failed_commit_is_not_acked_and_lands_on_redelivery(
        mosquitto_url: str, db_path: Path, client_id: str, mqtt_client: MqttClientKind) -> None:
    with Ingestor(mosquitto_url, db_path, client_id=client_id, mqtt_client=mqtt_client,
                  **FAST) as ingestor:
        # A second connection in this process shares the ingestor's database instance.
        saboteur = duckdb.connect(str(db_path))
        saboteur.execute("ALTER TABLE telemetry RENAME TO telemetry_away")
        publish(mosquitto_url, [telemetry(f"retry-{i}") for i in range(5)])
        assert ingestor.wait_for(lambda s: s.flush_failures >= 1, timeout=15)
        assert ingestor.stats.messages_landed == 0

        saboteur.execute("ALTER TABLE telemetry_away RENAME TO telemetry")
        saboteur.close()
        assert ingestor.wait_for(lambda s: s.messages_landed == 5, timeout=15)
    assert table_counts(db_path)[:2] == (5 * SIGNALS, 5)


def test_an_unreachable_broker_is_reported(db_path: Path, mqtt_client: MqttClientKind) -> None:
    with pytest.raises(BrokerError, match="cannot connect"):
        Ingestor("mqtt://127.0.0.1:1", db_path, mqtt_client=mqtt_client).start()


def test_stats_start_at_zero(broker_url: str, db_path: Path) -> None:
    assert Ingestor(broker_url, db_path).stats == IngestStats()


KILLABLE_INGESTOR = """
import sys
from pipeline.ingest.service import Ingestor
url, db, client_id, n, kind = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
ingestor = Ingestor(url, db, client_id=client_id, flush_rows=5 * 50, flush_interval_s=0.02,
                    mqtt_client=kind)
ingestor.start()
print("subscribed", flush=True)
ingestor.wait_for(lambda s: s.messages_landed >= n, 60)
print("landed", flush=True)
sys.stdin.read()
"""


def test_kill_9_while_landing_then_restart_lands_every_message_once(
        mosquitto_url: str, db_path: Path, client_id: str, mqtt_client: MqttClientKind) -> None:
    wires = [telemetry(f"k9-{i}", f"VIN{i % 3}") for i in range(400)]
    child = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_INGESTOR, mosquitto_url, str(db_path), client_id, "60",
         mqtt_client],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "subscribed"
        publish(mosquitto_url, wires)
        assert child.stdout.readline().strip() == "landed"
    finally:
        child.kill()  # SIGKILL while batches are still being landed and acked
        child.wait()

    in_store = StoreWatcher(expected=401)
    with Ingestor(mosquitto_url, db_path, client_id=client_id, after_commit=in_store,
                  mqtt_client=mqtt_client, **FAST) as restarted:
        publish(mosquitto_url, [telemetry("k9-sentinel")])  # at least one commit after restart
        assert in_store.reached.wait(30), f"only {in_store.count} messages in the store"
        assert restarted.stats.flush_failures == 0
    # The kill really came mid-stream: the restarted process landed more than the sentinel.
    assert sum(r.messages_landed for r in in_store.results) > 1
    assert table_counts(db_path) == (401 * SIGNALS, 401, 0, 401)


class StoreWatcher:
    """An ``after_commit`` hook that counts landed messages on the writer's own connection."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count = expected, 0
        self.reached = threading.Event()
        self.results: list[LandResult] = []

    def __call__(self, con: duckdb.DuckDBPyConnection, result: LandResult) -> None:
        self.results.append(result)
        row = con.execute("SELECT count(*) FROM ingested_messages").fetchone()
        self.count = int(row[0]) if row else 0
        if self.count >= self.expected:
            self.reached.set()


def test_a_broker_restart_mid_stream_loses_nothing(tmp_path: Path, db_path: Path,
                                                   client_id: str,
                                                   mqtt_client: MqttClientKind) -> None:
    if find_mosquitto() is None:
        pytest.skip("needs mosquitto: amqtt does not persist sessions across a restart")
    port = free_port()
    first_half = [telemetry(f"br-a{i}", f"VIN{i % 5}") for i in range(300)]
    second_half = [telemetry(f"br-b{i}", f"VIN{i % 5}") for i in range(300)]
    in_store = StoreWatcher(expected=600)
    broker = EmbeddedBroker(port=port, prefer="mosquitto", data_dir=tmp_path / "mq").start()
    try:
        with Ingestor(broker.url, db_path, client_id=client_id, after_commit=in_store,
                      flush_rows=20 * SIGNALS, flush_interval_s=0.02, mqtt_client=mqtt_client):
            publish(broker.url, first_half)
            broker.stop()  # while the ingestor still holds unacknowledged messages
            broker = EmbeddedBroker(port=port, prefer="mosquitto",
                                    data_dir=tmp_path / "mq").start()
            publish(broker.url, second_half)
            assert in_store.reached.wait(60), f"only {in_store.count} messages in the store"
    finally:
        broker.stop()
    assert table_counts(db_path) == (600 * SIGNALS, 600, 0, 600)


def test_garbage_mixed_into_good_traffic(broker_url: str, ingestor: Ingestor,
                                         db_path: Path) -> None:
    from tests.pipeline.test_landing import BAD_MESSAGES

    # The ingest subscribes to our topics only, and the project's broker refuses payloads
    # over the contract's limit (tests/e2e/test_ingest_bounds.py lifts it to flood ingest).
    cases = [(case.topic, case.payload, reason) for case, reason in BAD_MESSAGES.values()
             if contract.vehicle_of_topic(case.topic)
             and len(case.payload) <= contract.MAX_PAYLOAD_BYTES]
    cases = [cases[k % len(cases)] for k in range(20)]
    bad = [(topic, payload) for topic, payload, _ in cases]
    good = [telemetry(f"mix-{i}", f"VIN{i % 4}") for i in range(200)]
    mixed = [w for i, g in enumerate(good) for w in ([g, bad[i // 10]] if i % 10 == 0 else [g])]

    publish(broker_url, mixed)

    assert ingestor.wait_for(handled(len(mixed)), timeout=30)
    assert (ingestor.stats.messages_landed, ingestor.stats.dead_letters) == (200, 20)
    ingestor.stop()
    assert table_counts(db_path)[:2] == (200 * SIGNALS, 200)
    con = duckdb.connect(str(db_path), read_only=True)
    letters = con.execute("SELECT topic, payload, reason FROM dead_letters ORDER BY id"
                          ).fetchall()
    con.close()
    # Fault-code topics have a session of their own: the order holds within each session.
    for on_faults in (False, True):
        kept = [(t, p, r) for t, p, r in letters if t.endswith("/dtc") is on_faults]
        sent = [(t, p, r) for t, p, r in cases if t.endswith("/dtc") is on_faults]
        assert [(t, p) for t, p, _ in kept] == [(t, p) for t, p, _ in sent]
        for (_, _, reason), (_, _, wanted) in zip(kept, sent, strict=True):
            assert wanted in reason


def test_after_commit_sees_fault_vehicles_and_its_failures_never_stop_ingest(
        broker_url: str, db_path: Path, client_id: str, mqtt_client: MqttClientKind) -> None:
    calls: list[tuple[tuple[str, ...], int]] = []

    def hook(con: duckdb.DuckDBPyConnection, result: LandResult) -> None:
        row = con.execute("SELECT count(*) FROM dtc_events").fetchone()
        calls.append((result.dtc_vehicle_ids, row[0] if row else -1))
        raise RuntimeError("the advice service is down")

    with Ingestor(broker_url, db_path, client_id=client_id, after_commit=hook,
                  mqtt_client=mqtt_client, **FAST) as ingestor:
        publish(broker_url, [fault("VIN7", "h1")])
        assert ingestor.wait_for(lambda s: s.hook_failures == 1, timeout=15)
        publish(broker_url, [telemetry("h2"), fault("VIN8", "h3")])
        assert ingestor.wait_for(lambda s: s.messages_landed == 3, timeout=15)
        assert ingestor.wait_for(lambda s: s.hook_failures >= 2, timeout=15)
    assert calls[0] == (("VIN7",), 1)
    assert ("VIN8",) in [ids for ids, _ in calls[1:]]


def fault(vehicle: str, msg_id: str) -> Wire:
    return contract.dtc_topic(vehicle), contract.encode(contract.DtcBatch(
        msg_id, vehicle, [contract.DtcEvent(T0, "P0AA6", "stored")]))


def test_health_reports_land_in_edge_health(broker_url: str, ingestor: Ingestor,
                                            db_path: Path) -> None:
    report = contract.HealthReport("hr1", "VIN9", T0, False, {"published": 3.0})
    publish(broker_url, [(contract.health_topic("VIN9"), contract.encode(report))])

    assert ingestor.wait_for(lambda s: s.health_rows == 1, timeout=15)
    ingestor.stop()
    con = duckdb.connect(str(db_path), read_only=True)
    assert con.execute("SELECT vehicle_id, online, counters->>'$.published' FROM edge_health"
                       ).fetchall() == [("VIN9", False, "3.0")]
    con.close()


def test_an_unknown_client_kind_is_refused_in_one_line(broker_url: str, db_path: Path) -> None:
    with pytest.raises(TerminalPipelineError,
                       match=r"^mqtt_client must be one of fast, stock, not 'turbo'$"):
        Ingestor(broker_url, db_path, mqtt_client="turbo")  # type: ignore[arg-type]
    with pytest.raises(TerminalPipelineError, match=r"mqtt_client: Input should be 'fast' or"):
        load_pipeline_settings(mqtt_client="turbo")


def test_fleetcare_ingest_runs_on_the_client_the_environment_names(
        broker_url: str, db_path: Path) -> None:
    env = dict(os.environ, FLEETCARE_PIPELINE__MQTT_CLIENT="stock")
    child = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "-v", "ingest", "--broker", broker_url,
         "--db", str(db_path), "--client-id", f"cli-{uuid.uuid4().hex[:10]}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, child.kill)  # a hung child fails the test, not the run
    watchdog.start()
    try:
        assert child.stderr is not None
        started = next((line for line in child.stderr if "ingesting" in line), "")
        child.terminate()
        assert child.wait() == 0
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
    assert "on the stock paho client" in started

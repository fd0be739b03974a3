"""Two ingest workers behind one MQTT shared subscription: the union of their stores holds
every message exactly once, on either of ingest's paho clients."""

from __future__ import annotations

import uuid
from pathlib import Path

import duckdb
import pytest

from edge.wire import contract
from pipeline.config import MqttClientKind
from pipeline.ingest.service import Ingestor
from tests.pipeline.test_ingest import (
    FAST,
    SIGNALS,
    T0,
    StoreWatcher,
    fleet,
    publish,
    register_fleet,
)

pytestmark = pytest.mark.broker


def test_two_workers_split_the_stream_without_loss_or_duplicates(
        mosquitto_url: str, tmp_path: Path, mqtt_client: MqttClientKind) -> None:
    group, tag = f"g{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    stores = [tmp_path / "worker-a.duckdb", tmp_path / "worker-b.duckdb"]
    watchers = [StoreWatcher(expected=1), StoreWatcher(expected=1)]
    wires = fleet(400, f"shared-{tag}")  # 400 telemetry + 1 fault-code + 1 truth message
    for path in stores:
        register_fleet(path)
    workers = [Ingestor(mosquitto_url, path, client_id=f"w{i}-{tag}", share_group=group,
                        after_commit=watcher, mqtt_client=mqtt_client, **FAST)
               for i, (path, watcher) in enumerate(zip(stores, watchers, strict=True))]
    for worker in workers:
        worker.start()
    try:
        publish(mosquitto_url, wires)
        for worker in workers:
            assert worker.topic_filters[0].startswith(f"$share/{group}/")
        assert _wait_total(workers, len(wires))
    finally:
        for worker in workers:
            worker.stop()

    assert all(w.stats.messages_landed > 0 for w in workers), "one worker got nothing"
    union = duckdb.connect()
    for name, path in zip(("a", "b"), stores, strict=True):
        union.execute(f"ATTACH '{path}' AS {name} (READ_ONLY)")
    row = union.execute(
        "SELECT count(*), count(DISTINCT msg_id) FROM "
        "(SELECT msg_id FROM a.ingested_messages UNION ALL SELECT msg_id FROM b.ingested_messages)"
    ).fetchone()
    assert row == (len(wires), len(wires))
    rows = union.execute("SELECT count(*), count(DISTINCT (msg_id, ts, signal)) FROM "
                         "(SELECT * FROM a.telemetry UNION ALL SELECT * FROM b.telemetry)"
                         ).fetchone()
    assert rows == (400 * SIGNALS, 400 * SIGNALS)


def test_a_worker_without_fault_codes_leaves_every_fault_code_to_the_other(
        mosquitto_url: str, tmp_path: Path) -> None:
    """The deployment for urgent leads raised once: only the first worker takes fault codes
    (and vehicle info), the telemetry is still dealt out to both."""
    group, tag = f"g{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    stores = [tmp_path / "with-faults.duckdb", tmp_path / "telemetry-only.duckdb"]
    codes = [(contract.dtc_topic(f"VIN{i % 4}"), contract.encode(contract.DtcBatch(
        f"{tag}-d{i}", f"VIN{i % 4}", [contract.DtcEvent(T0 + i, "P0A80", "stored")])))
        for i in range(20)]
    wires = [*fleet(200, f"nofaults-{tag}"), *codes]  # 21 fault-code messages in all
    for path in stores:
        register_fleet(path)
    workers = [Ingestor(mosquitto_url, path, client_id=f"w{i}-{tag}", share_group=group,
                        fault_codes=i == 0, **FAST) for i, path in enumerate(stores)]
    for worker in workers:
        worker.start()
    try:
        assert not any("/dtc" in f or "/info" in f for f in workers[1].topic_filters)
        publish(mosquitto_url, wires)
        assert _wait_total(workers, len(wires))
    finally:
        for worker in workers:
            worker.stop()
    counts = []
    for path in stores:
        with duckdb.connect(str(path), read_only=True) as con:
            counts.append(con.execute(
                "SELECT (SELECT count(DISTINCT msg_id) FROM dtc_events),"
                " (SELECT count(DISTINCT msg_id) FROM telemetry)").fetchone())
    assert counts[0] is not None and counts[1] is not None
    assert (counts[0][0], counts[1][0]) == (21, 0)
    assert counts[0][1] > 0 and counts[1][1] > 0 and counts[0][1] + counts[1][1] == 200


def test_a_worker_switched_to_no_fault_codes_strands_no_queued_fault_code(
        mosquitto_url: str, tmp_path: Path) -> None:
    """Its fault-code session from the run with fault codes is still in the share group: the
    broker queues fault codes for it while it is offline. Started without fault codes, the
    worker lands those and gives the filters up, so later ones all go to the other worker."""
    group, tag = f"g{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    stores = [tmp_path / "with-faults.duckdb", tmp_path / "switched.duckdb"]
    for path in stores:
        register_fleet(path)

    def codes(first: int, n: int) -> list[tuple[str, bytes]]:
        return [(contract.dtc_topic(f"VIN{i % 4}"), contract.encode(contract.DtcBatch(
            f"{tag}-d{i}", f"VIN{i % 4}", [contract.DtcEvent(T0 + i, "P0A80", "stored")])))
            for i in range(first, first + n)]

    def worker(i: int, fault_codes: bool) -> Ingestor:
        return Ingestor(mosquitto_url, stores[i], client_id=f"w{i}-{tag}", share_group=group,
                        fault_codes=fault_codes, **FAST)

    worker(1, True).start().stop()  # its sessions exist, offline, in the share group
    first = worker(0, True).start()
    try:
        publish(mosquitto_url, codes(0, 20))  # dealt out: some queue for the offline worker
        second = worker(1, False).start()
        try:
            assert _wait_total([first, second], 20)
            publish(mosquitto_url, codes(20, 20))
            assert _wait_total([first, second], 40)
        finally:
            second.stop()
    finally:
        first.stop()
    ids = []
    for path in stores:
        with duckdb.connect(str(path), read_only=True) as con:
            ids.append({str(r[0]) for r in con.execute(
                "SELECT DISTINCT msg_id FROM dtc_events").fetchall()})
    assert ids[1], "nothing had queued for the switched worker's fault-code session"
    assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == 40
    assert {f"{tag}-d{i}" for i in range(20, 40)} <= ids[0]  # after the switch: all to one


def _wait_total(workers: list[Ingestor], total: int) -> bool:
    """Wait until the workers together have handled ``total`` messages (either may be last)."""
    def done() -> bool:
        return sum(w.stats.messages_landed + w.stats.duplicates for w in workers) >= total

    for _ in range(300):
        if done():
            return True
        workers[0].wait_for(lambda _: done(), timeout=0.05)
    return done()

"""Receipts on the agent's side: a PUBACK marks an entry sent, only a receipt deletes it.

The spool keeps each entry's ``msg_id`` (and migrates a spool written before it did), and the
publisher, on a real broker, sends again what no receipt named, skips what its spool evicted,
and ignores receipts that are not its own. The backend here is a plain MQTT client publishing
receipts by hand, so each rule is seen on its own; tests/pipeline/test_ingest_receipts.py has
ingest publish them, tests/e2e/test_receipt_outages.py puts both through broker failures.
"""

from __future__ import annotations

import functools
import socket
import sqlite3
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.publish import Publisher, Receipts
from edge.spool import Priority, Spool
from edge.wire import contract
from edge.wire.mqtt import parse_mqtt_url
from tests.contract_subscriber import ContractSubscriber
from tests.polling import wait_until

_OLD_SCHEMA = """
CREATE TABLE entry (seq INTEGER PRIMARY KEY AUTOINCREMENT, priority INTEGER NOT NULL,
                    topic TEXT NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL);
CREATE INDEX entry_by_priority ON entry (priority, seq);
CREATE TABLE checkpoint (key TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE evicted (priority INTEGER PRIMARY KEY, messages INTEGER NOT NULL,
                      bytes INTEGER NOT NULL);
"""
"""The spool's layout before receipts (user_version 0, no msg_id column)."""


_poll = functools.partial(wait_until, timeout=30.0, step=0.02)
"""Whether a condition came true within 30 s (checked every 20 ms)."""


def _batch(vehicle: str, msg_id: str, samples: int = 3) -> tuple[str, bytes]:
    message = contract.TelemetryBatch(msg_id, vehicle,
                                      [1_767_225_600.0 + i for i in range(samples)],
                                      ["Vehicle.Speed"] * samples,
                                      [float(i) for i in range(samples)])
    return contract.telemetry_topic(vehicle), contract.encode(message)


class Backend:
    """Publishes receipts as ingest would, from its own MQTT connection."""

    def __init__(self, broker_url: str) -> None:
        host, port = parse_mqtt_url(broker_url)
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.connect(host, port)
        self._client.loop_start()

    def receipt(self, vehicle: str, payload: bytes | None = None, *,
                landed: list[str] | None = None, dead: list[str] | None = None,
                about: str | None = None) -> None:
        """Publish a receipt on ``vehicle``'s topic (for ``about``, when it says otherwise)."""
        if payload is None:
            payload = contract.encode_receipt(contract.Receipt(
                f"r-{uuid.uuid4().hex}", about or vehicle, time.time(), landed=landed or [],
                dead_lettered=dead or []))
        info = self._client.publish(contract.receipt_topic(vehicle), payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def _old_spool(directory: Path, entries: list[tuple[str, bytes]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(directory / "spool.sqlite3")
    db.executescript(_OLD_SCHEMA)
    db.executemany("INSERT INTO entry (priority, topic, payload, size) VALUES (0, ?, ?, ?)",
                   [(t, p, len(t) + len(p)) for t, p in entries])
    db.execute("INSERT INTO evicted VALUES (0, 4, 400)")
    db.execute("INSERT INTO checkpoint VALUES ('log.asc', 1234)")
    db.commit()
    db.close()


def test_a_spool_from_before_receipts_is_migrated_and_its_entries_can_be_receipted(
        tmp_path: Path) -> None:
    first, second = _batch("GW1", "GW1-old-0001"), _batch("GW1", "GW1-old-0002")
    foreign = ("fleetcare/v1/vehicles/GW1/telemetry", b'{"schema": 1, "msg_id": "spaced-id"}')
    _old_spool(tmp_path, [first, second, foreign, ("t", b"not json")])

    spool = Spool(tmp_path)
    assert len(spool.pending()) == 4  # nothing lost in the migration
    assert spool.checkpoint("log.asc") == 1234 and spool.stats().dropped == 4
    removed = spool.receipt(["GW1-old-0002", "spaced-id", "never-spooled"])
    assert [msg_id for _, msg_id in removed] == ["GW1-old-0002", "spaced-id"]
    assert spool.receipt(["GW1-old-0002"]) == []  # a receipt that comes twice is harmless
    spool.close()

    again = Spool(tmp_path)  # opening a migrated spool migrates nothing twice
    remaining = [again.read(seq) for seq in again.pending()]
    assert [(e.topic, e.payload) for e in remaining if e] == [first, ("t", b"not json")]
    assert [msg_id for _, msg_id in again.receipt(["GW1-old-0001"])] == ["GW1-old-0001"]
    again.close()
    db = sqlite3.connect(tmp_path / "spool.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone() == (1,)
    db.close()


def test_new_entries_are_receipted_by_the_id_in_their_payload(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    kept = spool.append(*_batch("GW1", "GW1-a"))
    gone = spool.append(*_batch("GW1", "GW1-b"), priority=Priority.FAULT)
    assert spool.receipt(["GW1-b"]) == [(gone, "GW1-b")]
    assert spool.pending() == [kept]
    assert spool.stats().acked == 1


@pytest.mark.broker
def test_a_puback_marks_sent_a_receipt_deletes_and_silence_means_a_resend(
        broker_url: str, tmp_path: Path) -> None:
    vehicle = f"RCPT-{uuid.uuid4().hex[:6]}"
    wire = ContractSubscriber(broker_url, contract.telemetry_topic(vehicle))
    backend = Backend(broker_url)
    spool = Spool(tmp_path, fsync=False)
    spool.append(*_batch(vehicle, f"{vehicle}-1"))
    publisher = Publisher(spool, broker_url, f"fleetcare-edge-{vehicle}",
                          receipts=Receipts(vehicle, timeout_s=0.5, max_timeout_s=1.0))
    publisher.start()
    try:
        assert _poll(lambda: publisher.stats().acked >= 1)
        assert spool.pending() != []  # the broker has it; the store has not said so
        # No receipt: the same message goes out again (and again), nothing is deleted.
        assert wire.wait_for(lambda: len(wire.messages) >= 3)
        assert {m.msg_id for m in wire.messages} == {f"{vehicle}-1"}
        # The wire can see the third copy a moment before the publisher has counted it.
        assert _poll(lambda: publisher.stats().resent >= 2)
        assert publisher.stats().awaiting_receipt == 1

        # Receipts that are not this vehicle's own change nothing, and are counted.
        backend.receipt(vehicle, b"{not json")
        backend.receipt(vehicle, landed=[f"{vehicle}-1"], about="SOMEONE-ELSE")
        assert _poll(lambda: publisher.stats().bad_receipts == 2)
        assert spool.pending() != []

        backend.receipt(vehicle, dead=[f"{vehicle}-1"])
        assert publisher.wait_drained(30)
        stats = publisher.stats()
        assert (stats.receipted, stats.dead_lettered, stats.awaiting_receipt) == (1, 1, 0)
        resent = stats.resent
        spool.append(*_batch(vehicle, f"{vehicle}-2"))
        publisher.notify()
        assert wire.wait_for(lambda: any(m.msg_id == f"{vehicle}-2" for m in wire.messages))
        backend.receipt(vehicle, landed=[f"{vehicle}-2"])
        assert publisher.wait_drained(30)
        # The receipted message is never sent again.
        assert sum(m.msg_id == f"{vehicle}-1" for m in wire.messages) == 1 + resent
    finally:
        publisher.stop()
        backend.close()
        wire.close()
        spool.close()


@pytest.mark.broker
def test_an_unreceipted_entry_is_still_evicted_when_the_spool_is_full_and_not_resent(
        broker_url: str, tmp_path: Path) -> None:
    vehicle = f"EVICT-{uuid.uuid4().hex[:6]}"
    wire = ContractSubscriber(broker_url, contract.telemetry_topic(vehicle))
    first, second, third = (_batch(vehicle, f"{vehicle}-{i}") for i in (1, 2, 3))
    size = len(first[0]) + len(first[1])
    spool = Spool(tmp_path, fsync=False, max_bytes=2 * size + size // 2)  # room for two
    spool.append(*first)
    spool.append(*second)
    publisher = Publisher(spool, broker_url, f"fleetcare-edge-{vehicle}",
                          receipts=Receipts(vehicle, timeout_s=0.5, max_timeout_s=0.5))
    publisher.start()
    try:
        assert _poll(lambda: publisher.stats().acked >= 2)
        spool.append(*third)  # the oldest telemetry, sent but unreceipted, makes room
        publisher.notify()
        assert spool.stats().dropped == 1
        # The evicted entry's timeout came first; by the time the next one is sent again,
        # the publisher has found it gone instead of sending it.
        assert wire.wait_for(lambda: sum(m.msg_id == f"{vehicle}-3"
                                         for m in wire.messages) >= 2)
        assert sum(m.msg_id == f"{vehicle}-1" for m in wire.messages) == 1
        assert _poll(lambda: publisher.stats().awaiting_receipt == 2)
    finally:
        publisher.stop()
        wire.close()
        spool.close()


@pytest.mark.broker
def test_the_receipt_subscription_survives_a_reconnect(broker_url: str, tmp_path: Path) -> None:
    vehicle = f"RESUB-{uuid.uuid4().hex[:6]}"
    backend = Backend(broker_url)
    spool = Spool(tmp_path, fsync=False)
    publisher = Publisher(spool, broker_url, f"fleetcare-edge-{vehicle}",
                          receipts=Receipts(vehicle, timeout_s=30.0, max_timeout_s=30.0))
    publisher.start()
    try:
        assert _poll(lambda: publisher.stats().connects == 1)
        sock = publisher._client.socket()  # the link drops without a DISCONNECT
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        assert _poll(lambda: publisher.stats().connects == 2 and publisher.stats().connected)
        spool.append(*_batch(vehicle, f"{vehicle}-1"))
        publisher.notify()
        # Acknowledged on the new connection, whose SUBSCRIBE went out before it: the broker
        # holds the subscription by now, so the receipt reaches the agent.
        assert _poll(lambda: publisher.stats().acked >= 1)
        backend.receipt(vehicle, landed=[f"{vehicle}-1"])
        assert publisher.wait_drained(30)
        assert publisher.stats().resent == 0  # deleted by the receipt, not by a timeout
    finally:
        publisher.stop()
        backend.close()
        spool.close()


@pytest.mark.broker
def test_after_a_reconnect_no_entry_waits_out_the_backoff_it_grew_while_unreceipted(
        broker_url: str, tmp_path: Path) -> None:
    # A receipt the broker held for the old, clean session is lost with it: the entries
    # acknowledged before the drop must not sit out a backoff grown to minutes.
    vehicle = f"REWAIT-{uuid.uuid4().hex[:6]}"
    backend = Backend(broker_url)
    spool = Spool(tmp_path, fsync=False)
    spool.append(*_batch(vehicle, f"{vehicle}-1"))
    publisher = Publisher(spool, broker_url, f"fleetcare-edge-{vehicle}",
                          receipts=Receipts(vehicle, timeout_s=1.0, max_timeout_s=3600.0))
    publisher.start()
    try:
        assert _poll(lambda: publisher.stats().resent >= 3)
        assert publisher.stats().receipt_wait_s >= 8.0  # 1 s doubled on each re-send
        sock = publisher._client.socket()  # the link drops without a DISCONNECT
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        # Back to 1 s (or 2 s, if it was sent again since), not the 8 s or more it had reached.
        assert _poll(lambda: publisher.stats().connects == 2
                     and publisher.stats().receipt_wait_s <= 2.0)
        backend.receipt(vehicle, landed=[f"{vehicle}-1"])
        assert publisher.wait_drained(30)
        assert publisher.stats().receipt_wait_s == 0.0
    finally:
        publisher.stop()
        backend.close()
        spool.close()

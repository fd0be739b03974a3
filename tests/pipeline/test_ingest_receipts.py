"""Receipts on the backend's side: after each commit, every sender hears what was stored.

The real ingest loop on the session's broker publishes the receipts (on both paho clients);
landing is checked on a real DuckDB store to hand out outcomes only from a committed
transaction; the grouping into one receipt per vehicle is checked on its own. The mutual-TLS
ACL that lets a vehicle read only its own receipts is in tests/pipeline/test_receipts_acl.py.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from edge.wire import contract
from pipeline.config import MqttClientKind
from pipeline.ingest.admission import Vehicle, register_vehicles
from pipeline.ingest.landing import (
    InboundMessage,
    LandingError,
    Prepared,
    land_prepared,
    prepare,
)
from pipeline.ingest.receipts import Outcome, build_receipts, outcomes_of
from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store
from tests.contract_subscriber import ContractSubscriber
from tests.pipeline.test_ingest import handled, publish, telemetry


def _by_vehicle(found: list[contract.Receipt], vehicle: str) -> dict[str, list[str]]:
    mine = [r for r in found if r.vehicle_id == vehicle]
    return {"landed": sorted(i for r in mine for i in r.landed),
            "duplicates": sorted(i for r in mine for i in r.duplicates),
            "dead_lettered": sorted(i for r in mine for i in r.dead_lettered)}


@pytest.mark.broker
def test_ingest_receipts_landed_duplicate_and_dead_lettered_messages_to_their_senders(
        broker_url: str, db_path: Path, mqtt_client: MqttClientKind) -> None:
    tag = uuid.uuid4().hex[:6]
    one, two, stranger = f"R1-{tag}", f"R2-{tag}", f"NOBODY-{tag}"
    con = store.connect(db_path)
    register_vehicles(con, [Vehicle(one, "EV-A", "north"), Vehicle(two, "EV-A", "north")])
    con.close()
    heard = ContractSubscriber(broker_url, contract.RECEIPT_TOPICS)
    ingestor = Ingestor(broker_url, db_path, client_id=f"receipts-{tag}", rate_limit=None,
                        flush_interval_s=0.05, mqtt_client=mqtt_client).start()
    try:
        # Two's lie (a payload of one's on two's topic) and a vehicle nobody registered are
        # dead letters: stored all the same, so receipted to whoever sent them.
        lie = (contract.telemetry_topic(two), telemetry(f"{tag}-lie", one)[1])
        publish(broker_url, [telemetry(f"{tag}-a", one), telemetry(f"{tag}-b", one),
                             telemetry(f"{tag}-c", two), lie, telemetry(f"{tag}-s", stranger)])
        assert ingestor.wait_for(handled(5), timeout=30)
        publish(broker_url, [telemetry(f"{tag}-a", one)])  # the agent sends it again
        assert ingestor.wait_for(handled(6), timeout=30)
        assert heard.wait_for(lambda: sum(len(r.msg_ids) for r in heard.receipts) >= 6)
        published = ingestor.stats.receipts_published
    finally:
        ingestor.stop()
        heard.close()
    assert _by_vehicle(heard.receipts, one) == {
        "landed": [f"{tag}-a", f"{tag}-b"], "duplicates": [f"{tag}-a"], "dead_lettered": []}
    assert _by_vehicle(heard.receipts, two) == {
        "landed": [f"{tag}-c"], "duplicates": [], "dead_lettered": [f"{tag}-lie"]}
    assert _by_vehicle(heard.receipts, stranger) == {
        "landed": [], "duplicates": [], "dead_lettered": [f"{tag}-s"]}
    assert published == len(heard.receipts)
    assert len({r.msg_id for r in heard.receipts}) == len(heard.receipts)


def _prepared(wires: list[tuple[str, bytes]]) -> list[Prepared]:
    return [prepare(InboundMessage(topic, payload, 1_767_225_600.0)) for topic, payload in wires]


def test_outcomes_come_only_from_a_committed_transaction(db_path: Path) -> None:
    store.connect(db_path).close()  # the store exists, with its schema
    batch = _prepared([telemetry("m-1", "V1"), telemetry("m-2", "V2")])
    refused: list[Outcome] = []
    with store.connect_readonly(db_path) as readonly, pytest.raises(LandingError):
        land_prepared(readonly, batch, outcomes=refused)  # the store refuses the write
    assert refused == []  # nothing committed: nothing to receipt

    with store.connect(db_path) as con:
        first: list[Outcome] = []
        land_prepared(con, batch, outcomes=first)
        again: list[Outcome] = []
        land_prepared(con, _prepared([telemetry("m-1", "V1"), ("fleetcare/v1/vehicles/V2/dtc",
                                                              b"{broken")]), outcomes=again)
    assert first == [Outcome("V1", "m-1", "landed"), Outcome("V2", "m-2", "landed")]
    assert again == [Outcome("V1", "m-1", "duplicate")]  # no id in the broken one: no receipt


def test_one_receipt_per_vehicle_unless_its_ids_outgrow_one() -> None:
    wires = [telemetry("a1", "VA"), telemetry("b1", "VB"), telemetry("a2", "VA"),
             ("fleetcare/v1/vehicles/VB/telemetry", b'{"schema": 1, "msg_id": "b-bad"}')]
    batch = _prepared(wires)
    found = outcomes_of(batch, [0, 1], [2], [3])
    sent = build_receipts(found, now=1_767_225_600.0)
    assert [topic for topic, _ in sent] == [contract.receipt_topic("VA"),
                                            contract.receipt_topic("VB")]
    decoded = [contract.decode_receipt(payload) for _, payload in sent]
    assert [(r.vehicle_id, r.landed, r.duplicates, r.dead_lettered) for r in decoded] == [
        ("VA", ["a1"], ["a2"], []), ("VB", ["b1"], [], ["b-bad"])]

    many = [Outcome("VA", f"{i:0>200}", "landed") for i in range(3000)]  # ~600 KB of ids
    split = [contract.decode_receipt(p) for _, p in build_receipts(many)]
    assert len(split) == 3
    assert [i for r in split for i in r.landed] == [o.msg_id for o in many]
    assert all(len(orjson.dumps(r.landed)) <= contract.MAX_RECEIPT_BYTES + 210 for r in split)
    assert build_receipts([Outcome("not a vehicle id", "x", "landed")]) == []

"""Landing wire messages in a real DuckDB file: rows, idempotence, dead letters, replay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest

from edge import contract
from pipeline import store
from pipeline.landing import (
    InboundMessage,
    LandResult,
    land,
    list_dead_letters,
    prepare,
    replay_dead_letters,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = store.connect(db_path)
    yield connection
    connection.close()


def telemetry(msg_id: str, vehicle: str = "VIN1", n: int = 3) -> InboundMessage:
    batch = contract.TelemetryBatch(
        msg_id, vehicle, [T0 + i for i in range(n)], [f"Vehicle.Sig{i % 2}" for i in range(n)],
        [float(i) for i in range(n)],
    )
    return InboundMessage(contract.telemetry_topic(vehicle), contract.encode(batch), T0)


def dtc(msg_id: str, vehicle: str = "VIN1") -> InboundMessage:
    batch = contract.DtcBatch(msg_id, vehicle, [
        contract.DtcEvent(T0, "P0A80", "stored", ecu="BMS"),
        contract.DtcEvent(T0 + 5, "521:4", "active", source="j1939", cleared=True),
    ])
    return InboundMessage(contract.dtc_topic(vehicle), contract.encode(batch), T0)


def truth(msg_id: str, vehicle: str = "VIN1", region: str = "north") -> InboundMessage:
    record = contract.TruthRecord(msg_id, vehicle, "EV-A", region, T0, T0 + 86_400, [
        contract.ComponentTruth("traction_battery", T0 + 3600, 0.4),
        contract.ComponentTruth("brakes", None, 0.9),
    ])
    return InboundMessage(contract.truth_topic(vehicle), contract.encode(record), T0)


def count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_every_kind_lands_with_its_rows(con: duckdb.DuckDBPyConnection) -> None:
    result = land(con, [telemetry("t1"), dtc("d1"), truth("g1")])

    assert result == LandResult(messages_landed=3, telemetry_rows=3, dtc_rows=2, truth_rows=2)
    rows = con.execute("SELECT vehicle_id, epoch(ts), signal, value, msg_id FROM telemetry "
                       "ORDER BY ts").fetchall()
    assert rows == [("VIN1", T0, "Vehicle.Sig0", 0.0, "t1"), ("VIN1", T0 + 1, "Vehicle.Sig1", 1.0,
                    "t1"), ("VIN1", T0 + 2, "Vehicle.Sig0", 2.0, "t1")]
    assert con.execute("SELECT code, status, ecu, source, cleared FROM dtc_events ORDER BY ts"
                       ).fetchall() == [("P0A80", "stored", "BMS", "can", False),
                                        ("521:4", "active", "", "j1939", True)]
    assert con.execute("SELECT component, epoch(failure_ts), health_at_end FROM ground_truth "
                       "ORDER BY component").fetchall() == [("brakes", None, 0.9),
                                                            ("traction_battery", T0 + 3600, 0.4)]
    assert con.execute("SELECT * FROM vehicles").fetchall() == [("VIN1", "EV-A", "north", None,
                                                                 None)]
    assert con.execute("SELECT msg_id, kind, n_rows FROM ingested_messages ORDER BY msg_id"
                       ).fetchall() == [("d1", "dtc", 2), ("g1", "truth", 2),
                                        ("t1", "telemetry", 3)]


def test_landing_the_same_batch_twice_writes_nothing_new(con: duckdb.DuckDBPyConnection) -> None:
    batch = [telemetry("t1"), dtc("d1"), truth("g1")]
    land(con, batch)

    again = land(con, batch)

    assert again == LandResult(duplicates=3)
    assert (count(con, "telemetry"), count(con, "dtc_events"), count(con, "ground_truth")) == (
        3, 2, 2)


def test_duplicates_inside_one_batch_land_once(con: duckdb.DuckDBPyConnection) -> None:
    result = land(con, [telemetry("t1"), telemetry("t1"), truth("g1"), truth("g1")])

    assert (result.messages_landed, result.duplicates, result.telemetry_rows) == (2, 2, 3)
    assert count(con, "telemetry") == 3


def test_a_newer_truth_record_updates_the_vehicle_but_keeps_crm_fields(
        con: duckdb.DuckDBPyConnection) -> None:
    land(con, [truth("g1", region="north")])
    con.execute("UPDATE vehicles SET customer_id = 'C7'")

    land(con, [truth("g2", region="south"), truth("g3", region="west")])

    assert con.execute("SELECT region, customer_id FROM vehicles").fetchall() == [("west", "C7")]
    assert set(con.execute("SELECT msg_id FROM ground_truth").fetchall()) == {("g3",)}


def _raw(topic: str, payload: bytes) -> InboundMessage:
    return InboundMessage(topic, payload, T0)


BAD_MESSAGES = {
    "garbage": (_raw(contract.telemetry_topic("VIN1"), b"\x00\xffnot json"), "not valid JSON"),
    "truncated": (_raw(contract.telemetry_topic("VIN1"), telemetry("x").payload[:40]),
                  "not valid JSON"),
    "schema": (_raw(contract.telemetry_topic("VIN1"), orjson.dumps(
        orjson.loads(telemetry("s").payload) | {"schema": 99})), "unsupported schema version 99"),
    "vehicle": (_raw(contract.telemetry_topic("VIN2"), telemetry("v").payload),
                "does not match payload vehicle_id 'VIN1'"),
    "kind": (_raw(contract.dtc_topic("VIN1"), telemetry("k").payload), "a telemetry payload"),
    "topic": (_raw("somewhere/else", telemetry("o").payload), "not a fleetcare ingest topic"),
}


@pytest.mark.parametrize("case", BAD_MESSAGES, ids=list(BAD_MESSAGES))
def test_bad_messages_are_dead_lettered_and_the_rest_lands(
        con: duckdb.DuckDBPyConnection, case: str) -> None:
    bad, reason = BAD_MESSAGES[case]

    result = land(con, [telemetry("good1"), bad, dtc("good2")])

    assert (result.messages_landed, result.dead_letters) == (2, 1)
    [letter] = list_dead_letters(con)
    assert reason in letter.reason
    assert (letter.topic, letter.payload, letter.replayed_at) == (bad.topic, bad.payload, None)
    assert count(con, "telemetry") == 3


def test_replay_lands_a_fixed_letter_and_keeps_a_broken_one(
        con: duckdb.DuckDBPyConnection) -> None:
    misrouted = _raw(contract.telemetry_topic("VIN2"), telemetry("late", vehicle="VIN2").payload)
    land(con, [_raw(contract.dtc_topic("VIN2"), misrouted.payload), _raw("x/y", b"{")])
    fixable = next(d for d in list_dead_letters(con) if d.topic != "x/y")
    con.execute("UPDATE dead_letters SET topic = ?, reason = 'old' WHERE id = ?",
                [misrouted.topic, fixable.id])

    result = replay_dead_letters(con)

    assert (result.messages_landed, result.telemetry_rows, result.dead_letters) == (1, 3, 1)
    letters = {d.topic: d for d in list_dead_letters(con)}
    assert letters[misrouted.topic].replayed_at is not None
    assert letters["x/y"].replayed_at is None and "not valid JSON" in letters["x/y"].reason
    assert replay_dead_letters(con) == LandResult(dead_letters=1)


def test_replay_of_selected_ids_marks_already_landed_ids_as_replayed(
        con: duckdb.DuckDBPyConnection) -> None:
    message = telemetry("t9")
    land(con, [_raw(contract.dtc_topic("VIN1"), message.payload), _raw("x/y", b"{")])
    land(con, [message])
    letter = next(d for d in list_dead_letters(con) if d.topic != "x/y")
    con.execute("UPDATE dead_letters SET topic = ? WHERE id = ?", [message.topic, letter.id])

    result = replay_dead_letters(con, [letter.id])

    assert result == LandResult(duplicates=1)
    assert [d.replayed_at is None for d in list_dead_letters(con)] == [True, False]


def test_prepare_counts_telemetry_rows_without_touching_the_store() -> None:
    assert prepare(telemetry("t1", n=7)).telemetry_rows == 7
    assert prepare(dtc("d1")).telemetry_rows == 0
    assert prepare(_raw("a/b", b"")).reason is not None

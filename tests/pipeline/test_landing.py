"""Landing wire messages in a real DuckDB file: rows, idempotence, dead letters, replay."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest

from edge.wire import contract
from pipeline.ingest.admission import Vehicle, register_vehicles
from pipeline.ingest.columnar import invalid_messages, telemetry_columns
from pipeline.ingest.deadletters import list_dead_letters, replay_dead_letters
from pipeline.ingest.landing import (
    KEPT_BYTES,
    InboundMessage,
    LandResult,
    land,
    prepare,
)
from pipeline.store import connection as store

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


def health(msg_id: str, vehicle: str = "VIN1", online: bool = True) -> InboundMessage:
    report = contract.HealthReport(msg_id, vehicle, T0 + 60, online,
                                   {"frames_received": 12.0, "evicted": 0.0})
    return InboundMessage(contract.health_topic(vehicle), contract.encode(report), T0)


def test_every_kind_lands_with_its_rows(con: duckdb.DuckDBPyConnection) -> None:
    result = land(con, [telemetry("t1"), dtc("d1"), truth("g1"), health("h1")])

    assert result == LandResult(messages_landed=4, telemetry_rows=3, dtc_rows=2, truth_rows=2,
                                health_rows=1, dtc_vehicle_ids=("VIN1",))
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
    # The simulator's truth registers the vehicle: its model and region, nothing imported.
    assert con.execute("SELECT vehicle_id, model, region, customer_id, centre_id, vin, "
                       "imported_at FROM vehicles").fetchall() == [
        ("VIN1", "EV-A", "north", None, None, None, None)]
    assert con.execute("SELECT vehicle_id, epoch(ts), online, counters->>'$.frames_received', "
                       "msg_id FROM edge_health").fetchall() == [("VIN1", T0 + 60, True, "12.0",
                                                                  "h1")]
    assert con.execute("SELECT msg_id, kind, n_rows FROM ingested_messages ORDER BY msg_id"
                       ).fetchall() == [("d1", "dtc", 2), ("g1", "truth", 2),
                                        ("h1", "health", 1), ("t1", "telemetry", 3)]


def test_landing_the_same_batch_twice_writes_nothing_new(con: duckdb.DuckDBPyConnection) -> None:
    batch = [telemetry("t1"), dtc("d1"), truth("g1")]
    land(con, batch)

    again = land(con, batch)

    assert again == LandResult(duplicates=3)  # no dtc_vehicle_ids either: nothing new
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


def _edited(message: InboundMessage, **fields: object) -> InboundMessage:
    """``message`` with some payload fields replaced (None removes the field)."""
    doc = orjson.loads(message.payload) | fields
    return _raw(message.topic, orjson.dumps({k: v for k, v in doc.items() if v is not None}))


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
    "oversize": (_raw(contract.telemetry_topic("VIN1"), b" " * (contract.MAX_PAYLOAD_BYTES + 1)),
                 "oversize: payload of 1000001 bytes"),
    "ms_timestamps": (_edited(telemetry("ms"), ts=[T0 * 1000, T0 * 1000, T0 * 1000]),
                      "ts[0] = 1767225600000.0 is not a Unix time in seconds"),
    "null_value": (_edited(telemetry("nv"), value=[1.0, None, 2.0]), "value holds 1 null"),
    "text_value": (_edited(telemetry("tv"), value=[1.0, "high", 2.0]), "Could not convert"),
    "bool_value": (_edited(telemetry("bo"), value=[1.0, True, 2.0]),
                   "value[1] = true is a boolean, not a number"),
    "bool_values": (_edited(telemetry("bf"), value=[False, False, False]),
                    "value[0] = false is a boolean"),
    "bool_ts": (_edited(telemetry("bt"), ts=[T0, T0, True]), "ts[2] = true is a boolean"),
    "lengths": (_edited(telemetry("ln"), signal=["a"]), "must have the same length"),
    "no_values": (_edited(telemetry("nv2"), value=None), "missing 'value'"),
    "no_msg_id": (_edited(telemetry("ni"), msg_id=""), "msg_id must be a non-empty string"),
    "bad_vehicle": (_edited(telemetry("bv"), vehicle_id="no/slashes"), "vehicle id"),
    "not_object": (_raw(contract.telemetry_topic("VIN1"), b"[1, 2]"), "must be a JSON object"),
    "unknown_kind": (_edited(telemetry("uk"), kind="selfie"), "unknown kind 'selfie'"),
    "dtc_ms_time": (_raw(contract.dtc_topic("VIN1"), contract.encode(contract.DtcBatch(
        "dm", "VIN1", [contract.DtcEvent(T0 * 1000, "P0A80", "stored")]))),
        "is not a Unix time in seconds"),
    "health_topic": (_raw(contract.telemetry_topic("VIN1"), health("hx").payload),
                     "a health payload arrived"),
}


@pytest.mark.parametrize("case", BAD_MESSAGES, ids=list(BAD_MESSAGES))
def test_bad_messages_are_dead_lettered_and_the_rest_lands(
        con: duckdb.DuckDBPyConnection, case: str) -> None:
    bad, reason = BAD_MESSAGES[case]

    result = land(con, [telemetry("good1"), bad, dtc("good2")])

    assert (result.messages_landed, result.dead_letters) == (2, 1)
    [letter] = list_dead_letters(con)
    assert reason in letter.reason
    kept = bad.payload[:KEPT_BYTES] if case == "oversize" else bad.payload  # only a head
    assert (letter.topic, letter.payload, letter.replayed_at) == (bad.topic, kept, None)
    assert (letter.payload_bytes, letter.payload_sha256) == (
        len(bad.payload), hashlib.sha256(bad.payload).hexdigest())
    assert count(con, "telemetry") == 3
    assert count(con, "ingested_messages") == 2


def test_replay_lands_a_fixed_letter_and_keeps_a_broken_one(
        con: duckdb.DuckDBPyConnection) -> None:
    misrouted = _raw(contract.telemetry_topic("VIN2"), telemetry("late", vehicle="VIN2").payload)
    land(con, [_raw(contract.dtc_topic("VIN2"), misrouted.payload), _raw("x/y", b"{")])
    fixable = next(d for d in list_dead_letters(con) if d.topic != "x/y")
    con.execute("UPDATE dead_letters SET topic = ?, reason = 'old' WHERE id = ?",
                [misrouted.topic, fixable.id])
    register_vehicles(con, [Vehicle("VIN2", "EV-A", "north")])

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

    result = replay_dead_letters(con, [letter.id], require_registered_vehicles=False)

    assert result == LandResult(duplicates=1)
    assert [d.replayed_at is None for d in list_dead_letters(con)] == [True, False]


def test_prepare_counts_telemetry_rows_without_touching_the_store() -> None:
    assert prepare(telemetry("t1", n=7)).telemetry_rows == 7
    assert prepare(dtc("d1")).telemetry_rows == 0
    assert prepare(_raw("a/b", b"")).reason is not None


def test_non_finite_values_fail_validation_with_the_message_named() -> None:
    good = telemetry_columns({"ts": [T0, T0], "signal": ["a", "b"], "value": [1.0, 2.0]})
    nan = telemetry_columns({"ts": [T0, T0], "signal": ["a", "b"], "value": [1.0, math.nan]})
    early = telemetry_columns({"ts": [T0, 3.0], "signal": ["a", "b"], "value": [1.0, 2.0]})

    assert invalid_messages([good, good]) == {}
    reasons = invalid_messages([good, nan, good, early])
    assert sorted(reasons) == [1, 3]
    assert "value[1] = nan is not a finite number" in reasons[1]
    assert "ts[1] = 3.0" in reasons[3]


def test_dtc_vehicle_ids_name_only_vehicles_with_new_fault_rows(
        con: duckdb.DuckDBPyConnection) -> None:
    land(con, [dtc("d1", "VIN1")])
    empty = InboundMessage(contract.dtc_topic("VIN3"), contract.encode(
        contract.DtcBatch("d3", "VIN3", [])), T0)

    result = land(con, [dtc("d1", "VIN1"), dtc("d2", "VIN2"), empty, telemetry("t1", "VIN4")])

    assert result.dtc_vehicle_ids == ("VIN2",)


def test_a_large_mixed_batch_lands_every_good_row(con: duckdb.DuckDBPyConnection) -> None:
    good = [telemetry(f"g{i}", f"VIN{i % 7}", n=50) for i in range(300)]
    bad = [case[0] for case in BAD_MESSAGES.values()]
    mixed = [m for pair in zip(good, bad * 50, strict=False) for m in pair] + good[len(bad) * 50:]

    result = land(con, mixed)

    assert (result.messages_landed, result.telemetry_rows, result.dead_letters) == (
        300, 300 * 50, min(len(bad) * 50, 300))
    assert con.execute("SELECT count(*), count(DISTINCT msg_id) FROM telemetry").fetchone() == (
        300 * 50, 300)


def test_a_message_the_store_refuses_is_isolated_and_the_rest_lands(db_path: Path) -> None:
    from pipeline.ingest.stats import StatsBoard
    from pipeline.ingest.writer import BatchWriter

    con = store.connect(db_path)
    # A store that refuses some values (as a stricter schema or a full column type would).
    con.execute("ALTER TABLE telemetry RENAME TO telemetry_loose")
    con.execute("CREATE TABLE telemetry AS SELECT * FROM telemetry_loose LIMIT 0")
    con.execute("ALTER TABLE telemetry ALTER COLUMN value SET DATA TYPE DECIMAL(4, 1)")
    board = StatsBoard()
    writer = BatchWriter(con, board, None)
    poison = InboundMessage(contract.telemetry_topic("VIN1"), contract.encode(
        contract.TelemetryBatch("poison", "VIN1", [T0], ["S"], [1e12])), T0)
    for item in (telemetry("ok1"), poison, telemetry("ok2")):
        writer.add(item)

    result = writer.flush()

    assert result is not None
    assert (result.messages_landed, result.telemetry_rows, result.dead_letters) == (2, 6, 1)
    [letter] = list_dead_letters(con)
    assert letter.payload == poison.payload and "store refused the message" in letter.reason
    assert (board.stats.flush_failures, board.stats.isolated) == (1, 1)
    con.close()


def test_a_store_that_refuses_everything_lands_nothing_and_acks_nothing(db_path: Path) -> None:
    from pipeline.ingest.stats import StatsBoard
    from pipeline.ingest.writer import BatchWriter

    con = store.connect(db_path)
    con.execute("ALTER TABLE telemetry RENAME TO telemetry_away")
    writer = BatchWriter(con, StatsBoard(), None)
    for item in (telemetry("a"), telemetry("b")):
        writer.add(item)

    assert writer.flush() is None
    assert count(con, "dead_letters") == 0 and count(con, "ingested_messages") == 0
    con.close()

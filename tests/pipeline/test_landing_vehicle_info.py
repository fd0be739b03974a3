"""Landing vehicle-info reports in a real DuckDB file: one row per vehicle and distinct report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import orjson
import pytest

from edge.wire import contract
from pipeline.ingest.landing import InboundMessage, land
from pipeline.store import connection as store

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
VIN_A = "1L06130RELP969468"
VIN_B = "WVWZZZ1JZXW000001"
DBC = {"truck.dbc": "ab" * 32}


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = store.connect(db_path)
    yield connection
    connection.close()


def info(msg_id: str, ts: float, vin: str | None = VIN_A, *, vehicle: str = "V1",
         version: str = "0.4.0") -> InboundMessage:
    report = contract.VehicleInfo(msg_id, vehicle, ts, vin, "j1939_feec" if vin else "none",
                                  version, DBC, "cd" * 32)
    return InboundMessage(contract.vehicle_info_topic(vehicle), contract.encode(report), ts)


def rows(con: duckdb.DuckDBPyConnection) -> list[tuple[object, ...]]:
    return con.execute(
        "SELECT vehicle_id, vin, vin_source, agent_version, epoch(first_seen), epoch(last_seen),"
        " reports, msg_id FROM vehicle_info ORDER BY first_seen, vin NULLS FIRST").fetchall()


def test_a_vehicle_info_lands_with_its_vin_version_and_fingerprints(
        con: duckdb.DuckDBPyConnection) -> None:
    result = land(con, [info("i1", T0)])
    assert result.messages_landed == 1 and result.vehicle_info_rows == 1
    assert rows(con) == [("V1", VIN_A, "j1939_feec", "0.4.0", T0, T0, 1, "i1")]
    fingerprints = con.execute(
        "SELECT dbc_fingerprints, rules_fingerprint FROM vehicle_info").fetchone()
    assert fingerprints is not None
    assert orjson.loads(fingerprints[0]) == DBC and fingerprints[1] == "cd" * 32
    kind = con.execute("SELECT kind, n_rows FROM ingested_messages").fetchone()
    assert kind == ("vehicle_info", 1)


def test_repeats_move_last_seen_and_a_change_adds_a_row(con: duckdb.DuckDBPyConnection) -> None:
    land(con, [info("start-1", T0, None), info("vin-1", T0 + 5)])
    # The next start: the same two reports again, plus (in one batch) two of a new VIN.
    land(con, [info("start-2", T0 + 100, None), info("vin-2", T0 + 105),
               info("vin-3", T0 + 200, VIN_B), info("vin-4", T0 + 150, VIN_B)])
    assert rows(con) == [
        ("V1", None, "none", "0.4.0", T0, T0 + 100, 2, "start-2"),
        ("V1", VIN_A, "j1939_feec", "0.4.0", T0 + 5, T0 + 105, 2, "vin-2"),
        ("V1", VIN_B, "j1939_feec", "0.4.0", T0 + 150, T0 + 200, 2, "vin-3"),
    ]


def test_a_new_agent_version_is_a_new_report(con: duckdb.DuckDBPyConnection) -> None:
    land(con, [info("a", T0), info("b", T0 + 10, version="0.5.0")])
    assert [r[3] for r in rows(con)] == ["0.4.0", "0.5.0"]


def test_a_redelivered_report_lands_nothing(con: duckdb.DuckDBPyConnection) -> None:
    land(con, [info("i1", T0)])
    again = land(con, [info("i1", T0)])
    assert again.duplicates == 1 and again.vehicle_info_rows == 0
    assert rows(con) == [("V1", VIN_A, "j1939_feec", "0.4.0", T0, T0, 1, "i1")]


def test_a_malformed_vin_is_dead_lettered_with_the_reason(con: duckdb.DuckDBPyConnection
                                                          ) -> None:
    good = orjson.loads(contract.encode(contract.VehicleInfo(
        "bad-1", "V1", T0, VIN_A, "obd_mode09", "0.4.0")))
    bad = orjson.dumps(good | {"vin": "1L06130RELP9694"})
    topic = contract.vehicle_info_topic("V1")
    result = land(con, [InboundMessage(topic, bad, T0), info("ok", T0 + 1)])
    assert result.dead_letters == 1 and result.vehicle_info_rows == 1
    letter = con.execute("SELECT topic, reason, payload FROM dead_letters").fetchone()
    assert letter is not None
    assert letter[0] == topic and bytes(letter[2]) == bad
    assert "malformed VIN" in letter[1] and "has 15 characters, a VIN has 17" in letter[1]
    assert [r[-1] for r in rows(con)] == ["ok"]


def test_a_report_on_another_vehicles_topic_is_dead_lettered(
        con: duckdb.DuckDBPyConnection) -> None:
    item = info("i1", T0, vehicle="V1")
    forged = InboundMessage(contract.vehicle_info_topic("V2"), item.payload, T0)
    result = land(con, [forged, info("i2", T0 * 1000)])  # and one stamped in milliseconds
    assert result.dead_letters == 2 and rows(con) == []
    reasons = [r[0] for r in con.execute("SELECT reason FROM dead_letters ORDER BY id").fetchall()]
    assert "does not match payload vehicle_id" in reasons[0]
    assert "milliseconds sent as seconds" in reasons[1]

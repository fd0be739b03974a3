"""What a dead letter keeps, on a real DuckDB file: an oversize payload's head, size and hash;
booleans refused; a retained copy kept once; replay of what can be replayed; migration 009.

Through real mosquitto and the ``fleetcare`` processes these are exercised by
tests/e2e/test_ingest_bounds.py; here each rule meets its edge cases.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from edge.wire import contract
from pipeline.errors import TerminalPipelineError
from pipeline.ingest.deadletters import (
    list_dead_letters,
    replay_dead_letters,
    unreplayable_letters,
)
from pipeline.ingest.landing import KEPT_BYTES, InboundMessage, inbound, land
from pipeline.ingest.service import FLUSH_BYTES, Ingestor
from pipeline.ingest.stats import StatsBoard
from pipeline.ingest.writer import BatchWriter
from pipeline.store import connection as store

T0 = 1_767_225_600.0
LIMIT = contract.MAX_PAYLOAD_BYTES


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = store.connect(db_path)
    yield connection
    connection.close()


def telemetry(msg_id: str, vehicle: str = "VIN1", values: list[object] | None = None
              ) -> InboundMessage:
    batch = contract.TelemetryBatch(msg_id, vehicle, [T0, T0 + 1], ["a", "b"], [1.0, 2.0])
    payload = contract.encode(batch)
    if values is not None:  # what a producer that does not follow the contract sends
        import orjson

        payload = orjson.dumps(orjson.loads(payload) | {"value": values})
    return InboundMessage(contract.telemetry_topic(vehicle), payload, T0)


def oversize(n: int = LIMIT + 5000) -> bytes:
    """A payload over the limit whose head and tail differ (so a cut shows)."""
    return (b"{" + b"h" * (KEPT_BYTES * 2) + b"t" * n)[:n]


def letters(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int, str, str]]:
    """(bytes kept, payload_bytes, payload_sha256, reason) of every dead letter, oldest first."""
    return [(len(d.payload), d.payload_bytes, d.payload_sha256, d.reason)
            for d in reversed(list_dead_letters(con))]


def test_an_oversize_message_keeps_its_head_size_and_hash_from_either_client(
        con: duckdb.DuckDBPyConnection) -> None:
    whole = oversize()
    digest = hashlib.sha256(whole).hexdigest()
    topic = contract.telemetry_topic("VIN1")
    # The stock client gets the payload whole and cuts it on arrival; the fast client never
    # assembles it and hands on the head with the size and hash it computed while reading.
    stock = inbound(topic, whole, T0)
    fast = InboundMessage(topic, whole[:KEPT_BYTES], T0, size=len(whole), sha256=digest)
    assert (len(stock.payload), stock.size, stock.sha256) == (KEPT_BYTES, len(whole), digest)

    result = land(con, [stock, telemetry("ok"), fast])

    assert (result.messages_landed, result.dead_letters) == (1, 2)
    reason = f"oversize: payload of {len(whole)} bytes exceeds the limit of {LIMIT}"
    assert letters(con) == [(KEPT_BYTES, len(whole), digest, reason)] * 2
    assert {d.payload for d in list_dead_letters(con)} == {whole[:KEPT_BYTES]}
    assert all(d.truncated for d in list_dead_letters(con))


def test_a_payload_within_the_limit_is_kept_whole_for_replay(
        con: duckdb.DuckDBPyConnection) -> None:
    at_limit = b"[" + b" " * (LIMIT - 2) + b"]"  # exactly the limit: not oversize

    land(con, [InboundMessage(contract.dtc_topic("VIN1"), at_limit, T0)])

    [letter] = list_dead_letters(con)
    assert (letter.payload, letter.payload_bytes, letter.truncated) == (at_limit, LIMIT, False)
    assert "must be a JSON object" in letter.reason


def test_replay_lands_what_it_can_and_says_why_an_oversize_letter_cannot(
        con: duckdb.DuckDBPyConnection) -> None:
    late = telemetry("late", "VIN2")
    land(con, [inbound(late.topic, oversize(), T0),
               InboundMessage(contract.dtc_topic("VIN2"), late.payload, T0)])
    [fixable] = [d for d in list_dead_letters(con) if not d.truncated]
    con.execute("UPDATE dead_letters SET topic = ? WHERE id = ?", [late.topic, fixable.id])

    result = replay_dead_letters(con, require_registered_vehicles=False)

    assert (result.messages_landed, result.telemetry_rows, result.dead_letters) == (1, 2, 1)
    [stuck] = unreplayable_letters(con)
    assert stuck.replayed_at is None
    assert (f"only its first {KEPT_BYTES} bytes were kept (sha256 {stuck.payload_sha256}), "
            "so it cannot be replayed") in stuck.reason
    assert unreplayable_letters(con, [fixable.id]) == []
    assert [d.id for d in unreplayable_letters(con, [stuck.id])] == [stuck.id]


@pytest.mark.parametrize("values", [[True, 2.0], [1.0, False], [False, True]],
                         ids=["true", "false", "all"])
def test_boolean_values_are_dead_lettered_not_landed_as_numbers(
        con: duckdb.DuckDBPyConnection, values: list[object]) -> None:
    result = land(con, [telemetry("b", values=values), telemetry("ok", "VIN3")])

    assert (result.messages_landed, result.telemetry_rows, result.dead_letters) == (1, 2, 1)
    [letter] = list_dead_letters(con)
    assert "is a boolean, not a number" in letter.reason
    assert con.execute("SELECT DISTINCT vehicle_id FROM telemetry").fetchall() == [("VIN3",)]


def test_a_signal_named_true_is_still_a_number(con: duckdb.DuckDBPyConnection) -> None:
    batch = contract.TelemetryBatch("n", "VIN1", [T0], ["Vehicle.Door.IsOpen.true"], [1.0])
    result = land(con, [InboundMessage(contract.telemetry_topic("VIN1"),
                                       contract.encode(batch), T0)])

    assert (result.messages_landed, result.dead_letters) == (1, 0)


def test_a_retained_copy_of_a_dead_letter_is_not_kept_again(
        con: duckdb.DuckDBPyConnection) -> None:
    topic = contract.dtc_topic("VIN1")
    live = InboundMessage(topic, b"{broken", T0)
    again = InboundMessage(topic, b"{broken", T0 + 60, retained=True)

    first = land(con, [live, again])  # after a restart the queued and retained copies meet
    later = land(con, [again])  # every later subscription resends the retained copy
    other = land(con, [InboundMessage(topic, b"{other", T0, retained=True)])
    resent = land(con, [InboundMessage(topic, b"{broken", T0)])  # not retained: a new event

    assert (first.dead_letters, first.retained_repeats) == (1, 1)
    assert (later.dead_letters, later.retained_repeats) == (0, 1)
    assert (other.dead_letters, other.retained_repeats) == (1, 0)
    assert (resent.dead_letters, resent.retained_repeats) == (1, 0)
    assert len(list_dead_letters(con)) == 3


def test_a_retained_valid_message_is_a_duplicate_after_it_landed(
        con: duckdb.DuckDBPyConnection) -> None:
    message = telemetry("r1")
    retained = InboundMessage(message.topic, message.payload, T0, retained=True)

    assert land(con, [retained]).messages_landed == 1
    assert land(con, [retained]).duplicates == 1
    assert list_dead_letters(con) == []


def test_migration_009_describes_letters_kept_before_it(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    old = duckdb.connect(str(path))
    old.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                "summary VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
    for migration in store.load_migrations():
        if migration.version < 9:
            old.execute(migration.sql)
            old.execute("INSERT INTO schema_migrations (version, summary) VALUES (?, ?)",
                        [migration.version, migration.summary])
    old.execute("INSERT INTO dead_letters (topic, reason, payload) VALUES ('t', 'r', 'abc')")
    old.close()

    with store.connect_readonly(path) as reader:  # a reader that is not migrated yet
        assert letters(reader) == [(3, 3, hashlib.sha256(b"abc").hexdigest(), "r")]
    with store.connect(path) as con:
        assert store.schema_version(con) >= 9
        assert con.execute("SELECT payload_bytes, payload_sha256 FROM dead_letters"
                           ).fetchall() == [(3, hashlib.sha256(b"abc").hexdigest())]


def test_the_writer_counts_the_bytes_it_holds(con: duckdb.DuckDBPyConnection) -> None:
    writer = BatchWriter(con, StatsBoard(), None)
    small = telemetry("s")
    writer.add(small)
    writer.add(inbound(small.topic, oversize(), T0))

    assert writer.bytes == len(small.payload) + KEPT_BYTES  # the oversize one: its head
    result = writer.flush()
    assert result is not None and (result.messages_landed, result.dead_letters) == (1, 1)
    assert (writer.rows, writer.bytes) == (0, 0)


@pytest.mark.parametrize("setting", [{"flush_rows": 0}, {"flush_bytes": -1},
                                     {"flush_interval_s": float("nan")},
                                     {"maintenance_interval_s": 0.0}],
                         ids=["rows", "bytes", "interval", "maintenance"])
def test_settings_that_would_never_land_a_batch_are_refused(
        db_path: Path, setting: dict[str, float]) -> None:
    [name] = setting
    with pytest.raises(TerminalPipelineError, match=f"^{name} must be a positive number"):
        Ingestor("mqtt://127.0.0.1:1", db_path, **setting)  # type: ignore[arg-type]
    assert not db_path.exists()


def test_the_cli_default_for_flush_bytes_is_ingests() -> None:
    from pipeline.cli.services import FLUSH_BYTES as CLI_DEFAULT

    assert CLI_DEFAULT == FLUSH_BYTES

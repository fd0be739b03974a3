"""Landing wire messages in DuckDB: decode, validate, deduplicate, insert in bulk, in one go.

This module knows nothing of MQTT, so the exactly-once logic can be tested and replayed
(dead letters, backfills) without a broker. A batch lands in ONE transaction: either every
row of every message in it is committed, together with the ``ingested_messages`` rows that
make redelivery harmless, or nothing is and the caller must not acknowledge the batch.

Telemetry goes in as a column-wise Arrow table with one ``INSERT ... SELECT``: DuckDB takes
millions of rows per second that way and about two thousand row by row (DESIGN.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import repeat

import duckdb
import pyarrow as pa

from edge import contract
from edge.errors import ContractError
from pipeline.errors import TransientPipelineError

log = logging.getLogger(__name__)

_EXPECTED_TOPIC = {
    contract.TelemetryBatch: contract.telemetry_topic,
    contract.DtcBatch: contract.dtc_topic,
    contract.TruthRecord: contract.truth_topic,
}
_KIND = {contract.TelemetryBatch: "telemetry", contract.DtcBatch: "dtc",
         contract.TruthRecord: "truth"}


class LandingError(TransientPipelineError):
    """A batch could not be committed (it was rolled back; nothing of it is acknowledged)."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as it came off the broker; ``received_at`` is Unix time in seconds."""

    topic: str
    payload: bytes
    received_at: float


@dataclass(frozen=True, slots=True)
class Prepared:
    """An inbound message after decoding and topic checks, before any database work.

    Exactly one of ``message`` and ``reason`` is set: a valid message, or why it must be
    dead-lettered. Decoding is kept apart from landing so a subscriber can decode while
    it waits for a batch to fill, and knows the batch's row count without decoding twice.
    """

    item: InboundMessage
    message: contract.Message | None
    reason: str | None

    @property
    def telemetry_rows(self) -> int:
        """Signal samples this message carries (0 unless it is valid telemetry)."""
        message = self.message
        return len(message.ts) if isinstance(message, contract.TelemetryBatch) else 0


@dataclass(frozen=True, slots=True)
class LandResult:
    """What one call landed, skipped and dead-lettered."""

    messages_landed: int = 0
    telemetry_rows: int = 0
    dtc_rows: int = 0
    truth_rows: int = 0
    duplicates: int = 0
    dead_letters: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be landed, kept with its raw payload for replay."""

    id: int
    received_at: datetime
    topic: str
    reason: str
    payload: bytes
    replayed_at: datetime | None


def prepare(item: InboundMessage) -> Prepared:
    """Decode ``item`` and check that its topic matches its payload's kind and vehicle."""
    try:
        message = contract.decode(item.payload)
    except ContractError as exc:
        return Prepared(item, None, str(exc))
    reason = _topic_mismatch(item.topic, message)
    return Prepared(item, None, reason) if reason else Prepared(item, message, None)


def _topic_mismatch(topic: str, message: contract.Message) -> str | None:
    expected = _EXPECTED_TOPIC[type(message)](message.vehicle_id)
    if topic == expected:
        return None
    topic_vehicle = contract.vehicle_of_topic(topic)
    if topic_vehicle is None:
        return f"topic {topic!r} is not a fleetcare ingest topic"
    if topic_vehicle != message.vehicle_id:
        return (f"topic vehicle {topic_vehicle!r} does not match payload vehicle_id "
                f"{message.vehicle_id!r}")
    return f"a {_KIND[type(message)]} payload arrived on {topic!r}; expected {expected!r}"


def land(con: duckdb.DuckDBPyConnection, items: Sequence[InboundMessage]) -> LandResult:
    """Land a batch of raw messages in one transaction (see :func:`land_prepared`).

    Raises:
        LandingError: the transaction failed and was rolled back; do not acknowledge.
    """
    return land_prepared(con, [prepare(item) for item in items])


def land_prepared(con: duckdb.DuckDBPyConnection, batch: Sequence[Prepared]) -> LandResult:
    """Land prepared messages in one transaction, each ``msg_id`` at most once ever.

    Ids already in ``ingested_messages`` and repeats inside the batch count as duplicates;
    invalid messages become ``dead_letters`` rows with their reason.

    Raises:
        LandingError: the transaction failed and was rolled back; do not acknowledge.
    """
    with _transaction(con):
        accepted, duplicates, rejected = _partition(con, batch)
        result = _write(con, [batch[i].message for i in accepted],
                        [batch[i].item.topic for i in accepted])
        _insert_dead_letters(con, [batch[i] for i in rejected])
    return replace(result, duplicates=len(duplicates), dead_letters=len(rejected))


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.begin()
    try:
        yield
        con.commit()
    except BaseException as exc:
        con.rollback()
        if isinstance(exc, duckdb.Error):
            raise LandingError(f"landing transaction rolled back: {exc}") from exc
        raise


def _partition(con: duckdb.DuckDBPyConnection, batch: Sequence[Prepared]
               ) -> tuple[list[int], list[int], list[int]]:
    """Indices of the batch to land, to skip as duplicates, and to dead-letter."""
    ids = list({p.message.msg_id for p in batch if p.message is not None})
    landed = {row[0] for row in con.execute(
        "SELECT msg_id FROM ingested_messages WHERE msg_id IN (SELECT unnest($ids))",
        {"ids": ids},
    ).fetchall()} if ids else set()
    accepted: list[int] = []
    duplicates: list[int] = []
    rejected: list[int] = []
    for index, prepared in enumerate(batch):
        if prepared.message is None:
            rejected.append(index)
        elif prepared.message.msg_id in landed:
            duplicates.append(index)
        else:
            landed.add(prepared.message.msg_id)
            accepted.append(index)
    return accepted, duplicates, rejected


def _write(con: duckdb.DuckDBPyConnection, messages: Sequence[contract.Message | None],
           topics: Sequence[str]) -> LandResult:
    telemetry = [m for m in messages if isinstance(m, contract.TelemetryBatch)]
    dtcs = [m for m in messages if isinstance(m, contract.DtcBatch)]
    truths = [m for m in messages if isinstance(m, contract.TruthRecord)]
    result = LandResult(
        messages_landed=len(messages),
        telemetry_rows=_insert_telemetry(con, telemetry),
        dtc_rows=_insert_dtc(con, dtcs),
        truth_rows=_insert_truth(con, truths),
    )
    _insert_ingested(con, [m for m in messages if m is not None], topics)
    return result


def _insert_arrow(con: duckdb.DuckDBPyConnection, table: pa.Table, sql: str) -> None:
    """Run ``sql`` with ``table`` visible as ``batch``; the one bulk path for every table."""
    con.register("batch", table)
    try:
        con.execute(sql)
    except duckdb.Error:
        # The transaction is aborted and refuses even unregister; the next register of
        # "batch" replaces this one. Raise the error that says what went wrong.
        with suppress(duckdb.Error):
            con.unregister("batch")
        raise
    con.unregister("batch")


def _per_message(values: Sequence[str], lengths: Sequence[int]) -> pa.DictionaryArray:
    """A column repeating ``values[i]`` ``lengths[i]`` times, without one string per row."""
    indices: list[int] = []
    for index, length in enumerate(lengths):
        indices.extend(repeat(index, length))
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()),
                                          pa.array(values, pa.string()))


def _insert_telemetry(con: duckdb.DuckDBPyConnection,
                      batches: Sequence[contract.TelemetryBatch]) -> int:
    if not batches:
        return 0
    ts: list[float] = []
    signal: list[str] = []
    value: list[float] = []
    for batch in batches:
        ts.extend(batch.ts)
        signal.extend(batch.signal)
        value.extend(batch.value)
    lengths = [len(b.ts) for b in batches]
    table = pa.table({
        "vehicle_id": _per_message([b.vehicle_id for b in batches], lengths),
        "ts": pa.array(ts, pa.float64()),
        "signal": pa.array(signal, pa.string()),
        "value": pa.array(value, pa.float64()),
        "msg_id": _per_message([b.msg_id for b in batches], lengths),
    })
    _insert_arrow(con, table, "INSERT INTO telemetry (vehicle_id, ts, signal, value, msg_id) "
                  "SELECT vehicle_id, to_timestamp(ts), signal, value, msg_id FROM batch")
    return len(ts)


def _insert_dtc(con: duckdb.DuckDBPyConnection, batches: Sequence[contract.DtcBatch]) -> int:
    rows = [(b.vehicle_id, b.msg_id, e) for b in batches for e in b.events]
    if not rows:
        return 0
    table = pa.table({
        "vehicle_id": pa.array([r[0] for r in rows], pa.string()),
        "ts": pa.array([r[2].ts for r in rows], pa.float64()),
        "code": pa.array([r[2].code for r in rows], pa.string()),
        "status": pa.array([r[2].status for r in rows], pa.string()),
        "ecu": pa.array([r[2].ecu for r in rows], pa.string()),
        "source": pa.array([r[2].source for r in rows], pa.string()),
        "cleared": pa.array([r[2].cleared for r in rows], pa.bool_()),
        "msg_id": pa.array([r[1] for r in rows], pa.string()),
        "first_seen": pa.array([r[2].first_seen for r in rows], pa.float64()),
        "last_seen": pa.array([r[2].last_seen for r in rows], pa.float64()),
        "description": pa.array([r[2].description for r in rows], pa.string()),
    })
    _insert_arrow(con, table, "INSERT INTO dtc_events (vehicle_id, ts, code, status, ecu, "
                  "source, cleared, msg_id, first_seen, last_seen, description) SELECT "
                  "vehicle_id, to_timestamp(ts), code, status, ecu, source, cleared, msg_id, "
                  "to_timestamp(first_seen), to_timestamp(last_seen), description FROM batch")
    return len(rows)


def _insert_truth(con: duckdb.DuckDBPyConnection, records: Sequence[contract.TruthRecord]) -> int:
    if not records:
        return 0
    # An upsert may not touch one key twice in a statement: the batch's last record wins.
    rows = {(r.vehicle_id, c.component): (r, c) for r in records for c in r.components}
    if rows:
        _insert_arrow(con, pa.table({
            "vehicle_id": pa.array([k[0] for k in rows], pa.string()),
            "component": pa.array([k[1] for k in rows], pa.string()),
            "failure_ts": pa.array([c.failure_ts for _, c in rows.values()], pa.float64()),
            "health_at_end": pa.array([c.health_at_end for _, c in rows.values()], pa.float64()),
            "sim_start_ts": pa.array([r.sim_start_ts for r, _ in rows.values()], pa.float64()),
            "sim_end_ts": pa.array([r.sim_end_ts for r, _ in rows.values()], pa.float64()),
            "msg_id": pa.array([r.msg_id for r, _ in rows.values()], pa.string()),
        }), _TRUTH_UPSERT)
    _upsert_vehicles(con, records)
    return sum(len(r.components) for r in records)


_TRUTH_UPSERT = """
    INSERT INTO ground_truth (vehicle_id, component, failure_ts, health_at_end, sim_start_ts,
                              sim_end_ts, msg_id)
    SELECT vehicle_id, component, to_timestamp(failure_ts), health_at_end,
           to_timestamp(sim_start_ts), to_timestamp(sim_end_ts), msg_id FROM batch
    ON CONFLICT (vehicle_id, component) DO UPDATE SET
        failure_ts = excluded.failure_ts, health_at_end = excluded.health_at_end,
        sim_start_ts = excluded.sim_start_ts, sim_end_ts = excluded.sim_end_ts,
        msg_id = excluded.msg_id
"""


def _upsert_vehicles(con: duckdb.DuckDBPyConnection,
                     records: Sequence[contract.TruthRecord]) -> None:
    # Only model and region come from the simulator; customer and centre belong to the CRM
    # side and must survive a new truth record, hence DO UPDATE rather than REPLACE.
    latest = {r.vehicle_id: r for r in records}
    _insert_arrow(con, pa.table({
        "vehicle_id": pa.array(list(latest), pa.string()),
        "model": pa.array([r.model for r in latest.values()], pa.string()),
        "region": pa.array([r.region for r in latest.values()], pa.string()),
    }), "INSERT INTO vehicles (vehicle_id, model, region) SELECT vehicle_id, model, region "
        "FROM batch ON CONFLICT (vehicle_id) DO UPDATE SET model = excluded.model, "
        "region = excluded.region")


def _row_count(message: contract.Message) -> int:
    if isinstance(message, contract.TelemetryBatch):
        return len(message.ts)
    if isinstance(message, contract.DtcBatch):
        return len(message.events)
    if isinstance(message, contract.HealthReport):
        return 1
    return len(message.components)


def _insert_ingested(con: duckdb.DuckDBPyConnection, messages: Sequence[contract.Message],
                     topics: Sequence[str]) -> None:
    if not messages:
        return
    _insert_arrow(con, pa.table({
        "msg_id": pa.array([m.msg_id for m in messages], pa.string()),
        "vehicle_id": pa.array([m.vehicle_id for m in messages], pa.string()),
        "kind": pa.array([_KIND[type(m)] for m in messages], pa.string()),
        "topic": pa.array(list(topics), pa.string()),
        "n_rows": pa.array([_row_count(m) for m in messages], pa.int32()),
    }), "INSERT INTO ingested_messages (msg_id, vehicle_id, kind, topic, n_rows) "
        "SELECT msg_id, vehicle_id, kind, topic, n_rows FROM batch")


def _insert_dead_letters(con: duckdb.DuckDBPyConnection, rejected: Sequence[Prepared]) -> None:
    if not rejected:
        return
    for prepared in rejected:
        log.warning("dead-lettering a message on %s: %s", prepared.item.topic, prepared.reason)
    _insert_arrow(con, pa.table({
        "received_at": pa.array([p.item.received_at for p in rejected], pa.float64()),
        "topic": pa.array([p.item.topic for p in rejected], pa.string()),
        "reason": pa.array([p.reason for p in rejected], pa.string()),
        "payload": pa.array([p.item.payload for p in rejected], pa.binary()),
    }), "INSERT INTO dead_letters (received_at, topic, reason, payload) "
        "SELECT to_timestamp(received_at), topic, reason, payload FROM batch")


def replay_dead_letters(con: duckdb.DuckDBPyConnection,
                        ids: Sequence[int] | None = None) -> LandResult:
    """Try again to land dead letters not yet replayed (all of them, or only ``ids``).

    Run after a fix (a new contract version, a corrected topic map). Letters that land now,
    or whose ``msg_id`` has landed meanwhile, get ``replayed_at``; the rest stay with their
    reason updated to today's. All of it happens in one transaction.

    Raises:
        LandingError: the transaction failed and was rolled back.
    """
    with _transaction(con):
        letters = _pending_letters(con, ids)
        batch = [prepare(item) for _, item in letters]
        accepted, duplicates, rejected = _partition(con, batch)
        result = _write(con, [batch[i].message for i in accepted],
                        [batch[i].item.topic for i in accepted])
        done = [letters[i][0] for i in accepted + duplicates]
        if done:
            con.execute("UPDATE dead_letters SET replayed_at = now() "
                        "WHERE id IN (SELECT unnest($ids))", {"ids": done})
        _update_reasons(con, [(letters[i][0], batch[i].reason or "") for i in rejected])
    return replace(result, duplicates=len(duplicates), dead_letters=len(rejected))


def _pending_letters(con: duckdb.DuckDBPyConnection, ids: Sequence[int] | None
                     ) -> list[tuple[int, InboundMessage]]:
    sql = ("SELECT id, epoch(received_at), topic, payload FROM dead_letters "
           "WHERE replayed_at IS NULL")
    params: dict[str, object] = {}
    if ids is not None:
        sql += " AND id IN (SELECT unnest($ids::BIGINT[]))"
        params["ids"] = list(ids)
    rows = con.execute(sql + " ORDER BY id", params).fetchall()
    return [(int(r[0]), InboundMessage(str(r[2]), bytes(r[3]), float(r[1]))) for r in rows]


def _update_reasons(con: duckdb.DuckDBPyConnection, reasons: Sequence[tuple[int, str]]) -> None:
    if not reasons:
        return
    _insert_arrow(con, pa.table({
        "id": pa.array([r[0] for r in reasons], pa.int64()),
        "reason": pa.array([r[1] for r in reasons], pa.string()),
    }), "UPDATE dead_letters SET reason = batch.reason FROM batch WHERE dead_letters.id = batch.id")


def list_dead_letters(con: duckdb.DuckDBPyConnection, limit: int = 50) -> list[DeadLetter]:
    """The most recent dead letters, newest first, replayed ones included."""
    rows = con.execute(
        "SELECT id, received_at, topic, reason, payload, replayed_at FROM dead_letters "
        "ORDER BY id DESC LIMIT $limit", {"limit": limit},
    ).fetchall()
    return [DeadLetter(int(r[0]), r[1], str(r[2]), str(r[3]), bytes(r[4]), r[5]) for r in rows]

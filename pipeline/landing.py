"""Landing wire messages in DuckDB: decode, validate, deduplicate, insert in bulk, in one go.

This module knows nothing of MQTT, so the exactly-once logic can be tested and replayed
(dead letters, backfills) without a broker. A batch lands in ONE transaction: either every
row of every message in it is committed, together with the ``ingested_messages`` rows that
make redelivery harmless, or nothing is and the caller must not acknowledge the batch.

Telemetry never becomes one Python object per sample: :mod:`pipeline.columnar` turns each
payload's arrays into Arrow arrays and validates the whole batch with vectorised checks.
Anything that cannot land (oversize, not JSON, another schema version, a topic that does
not match the payload, a value or time that fails validation, a ``msg_id`` that already
landed for another vehicle) becomes a dead letter with its reason, in the same transaction
as the good rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from edge import contract
from edge.errors import ContractError
from pipeline import inserts
from pipeline.columnar import MAX_TS, MIN_TS, invalid_messages, telemetry_columns
from pipeline.errors import TransientPipelineError

log = logging.getLogger(__name__)

_TOPIC = {"telemetry": contract.telemetry_topic, "dtc": contract.dtc_topic,
          "health": contract.health_topic, "truth": contract.truth_topic}
_KIND = {contract.TelemetryBatch: "telemetry", contract.DtcBatch: "dtc",
         contract.HealthReport: "health", contract.TruthRecord: "truth"}


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

    Either ``reason`` says why it must be dead-lettered, or it is valid: telemetry then
    carries its samples as Arrow ``columns``, every other kind its decoded ``message``.
    Decoding is kept apart from landing so a subscriber can decode while it waits for a
    batch to fill, and knows the batch's row count without decoding twice.
    """

    item: InboundMessage
    reason: str | None = None
    kind: str = ""
    msg_id: str = ""
    vehicle_id: str = ""
    message: contract.Message | None = None
    columns: pa.RecordBatch | None = None

    @property
    def telemetry_rows(self) -> int:
        """Signal samples this message carries (0 unless it is valid telemetry)."""
        return self.columns.num_rows if self.columns is not None else 0

    @property
    def n_rows(self) -> int:
        """Rows this message produces in its table."""
        message = self.message
        if isinstance(message, contract.DtcBatch):
            return len(message.events)
        if isinstance(message, contract.TruthRecord):
            return len(message.components)
        return 1 if isinstance(message, contract.HealthReport) else self.telemetry_rows


@dataclass(frozen=True, slots=True)
class LandResult:
    """What one call landed, skipped and dead-lettered.

    ``dtc_vehicle_ids`` names the vehicles that got new ``dtc_events`` rows, sorted.
    ``msg_id_conflicts`` counts the dead letters (among ``dead_letters``) whose ``msg_id``
    had already landed for another vehicle.
    """

    messages_landed: int = 0
    telemetry_rows: int = 0
    dtc_rows: int = 0
    truth_rows: int = 0
    health_rows: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    dtc_vehicle_ids: tuple[str, ...] = ()
    msg_id_conflicts: int = 0


def prepare(item: InboundMessage) -> Prepared:
    """Decode ``item`` and check its size, schema, fields and topic (no database work)."""
    size = len(item.payload)
    if size > contract.MAX_PAYLOAD_BYTES:
        return Prepared(item, f"oversize: payload of {size} bytes exceeds the limit of "
                              f"{contract.MAX_PAYLOAD_BYTES}")
    try:
        doc = orjson.loads(item.payload)
    except orjson.JSONDecodeError as exc:
        return Prepared(item, f"payload is not valid JSON: {exc}")
    try:
        if (isinstance(doc, dict) and doc.get("kind") == "telemetry"
                and doc.get("schema") == contract.SCHEMA_VERSION):
            return _prepare_telemetry(item, doc)
        return _prepare_other(item, contract.decode(item.payload))
    except ContractError as exc:
        return Prepared(item, str(exc))


def _prepare_telemetry(item: InboundMessage, doc: dict[str, Any]) -> Prepared:
    msg_id, vehicle_id = doc.get("msg_id"), doc.get("vehicle_id")
    if not isinstance(msg_id, str) or not msg_id:
        raise ContractError("malformed telemetry payload: msg_id must be a non-empty string")
    if not isinstance(vehicle_id, str):
        raise ContractError("malformed telemetry payload: vehicle_id must be a string")
    reason = _topic_mismatch(item.topic, "telemetry", vehicle_id)
    if reason:
        return Prepared(item, reason)
    return Prepared(item, None, "telemetry", msg_id, vehicle_id,
                    columns=telemetry_columns(doc))


def _prepare_other(item: InboundMessage, message: contract.Message) -> Prepared:
    kind = _KIND[type(message)]
    reason = _topic_mismatch(item.topic, kind, message.vehicle_id) or _implausible_time(message)
    if reason:
        return Prepared(item, reason)
    return Prepared(item, None, kind, message.msg_id, message.vehicle_id, message)


def _topic_mismatch(topic: str, kind: str, vehicle_id: str) -> str | None:
    expected = _TOPIC[kind](vehicle_id)  # raises ContractError for an invalid vehicle id
    if topic == expected:
        return None
    topic_vehicle = contract.vehicle_of_topic(topic)
    if topic_vehicle is None:
        return f"topic {topic!r} is not a fleetcare ingest topic"
    if topic_vehicle != vehicle_id:
        return (f"topic vehicle {topic_vehicle!r} does not match payload vehicle_id "
                f"{vehicle_id!r}")
    return f"a {kind} payload arrived on {topic!r}; expected {expected!r}"


def _times(message: contract.Message) -> list[float | None]:
    if isinstance(message, contract.DtcBatch):
        return [t for e in message.events for t in (e.ts, e.first_seen, e.last_seen)]
    if isinstance(message, contract.TruthRecord):
        return [message.sim_start_ts, message.sim_end_ts,
                *(c.failure_ts for c in message.components)]
    return [message.ts] if isinstance(message, contract.HealthReport) else []


def _implausible_time(message: contract.Message) -> str | None:
    for ts in _times(message):
        if ts is not None and not (math.isfinite(ts) and MIN_TS <= ts < MAX_TS):
            return (f"validation: time {ts} is not a Unix time in seconds between 2000 and "
                    f"2100 (milliseconds sent as seconds?)")
    return None


def land(con: duckdb.DuckDBPyConnection, items: Sequence[InboundMessage]) -> LandResult:
    """Land a batch of raw messages in one transaction (see :func:`land_prepared`).

    Raises:
        LandingError: the transaction failed and was rolled back; do not acknowledge.
    """
    return land_prepared(con, [prepare(item) for item in items])


def land_prepared(con: duckdb.DuckDBPyConnection, batch: Sequence[Prepared]) -> LandResult:
    """Land prepared messages in one transaction, each ``msg_id`` at most once ever.

    Ids already in ``ingested_messages`` for the same vehicle, and repeats inside the batch,
    count as duplicates; an id that landed for another vehicle, and invalid messages, become
    ``dead_letters`` rows with their reason.

    Raises:
        LandingError: the transaction failed and was rolled back; do not acknowledge.
    """
    batch = validate(batch)
    with transaction(con):
        parts = partition(con, batch)
        result = write(con, [batch[i] for i in parts.accepted])
        dead = [(batch[i].item, reason) for i, reason in parts.rejected]
        for item, reason in dead:
            log.warning("dead-lettering a message on %s: %s", item.topic, reason)
        inserts.insert_dead_letters(
            con, [item.received_at for item, _ in dead], [item.topic for item, _ in dead],
            [reason for _, reason in dead], [item.payload for item, _ in dead])
    return replace(result, duplicates=len(parts.duplicates), dead_letters=len(dead),
                   msg_id_conflicts=parts.conflicts)


def validate(batch: Sequence[Prepared]) -> list[Prepared]:
    """``batch`` with telemetry whose values or times fail validation turned into rejects."""
    positions = [i for i, p in enumerate(batch) if p.columns is not None]
    bad = invalid_messages([batch[i].columns for i in positions if batch[i].columns])
    checked = list(batch)
    for index, reason in bad.items():
        checked[positions[index]] = Prepared(batch[positions[index]].item, reason)
    return checked


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """BEGIN ... COMMIT, or ROLLBACK and :class:`LandingError` for a database error."""
    con.begin()
    try:
        yield
        con.commit()
    except BaseException as exc:
        con.rollback()
        if isinstance(exc, duckdb.Error):
            raise LandingError(f"landing transaction rolled back: {exc}") from exc
        raise


@dataclass(frozen=True, slots=True)
class Partition:
    """A batch split by :func:`partition`: positions to land, to skip, and to dead-letter.

    ``rejected`` pairs each position with its dead-letter reason; ``conflicts`` counts those
    refused because their ``msg_id`` belongs to another vehicle.
    """

    accepted: list[int]
    duplicates: list[int]
    rejected: list[tuple[int, str]]
    conflicts: int = 0


def partition(con: duckdb.DuckDBPyConnection, batch: Sequence[Prepared]) -> Partition:
    """Split ``batch`` against ``ingested_messages`` (read inside the caller's transaction).

    A ``msg_id`` seen before is a harmless duplicate only when the same vehicle sends it
    again (a redelivery, or an agent resending after a lost acknowledgement). The same id
    from another vehicle is a replayed or forged message: it is dead-lettered with a reason
    naming the id and its owner, never counted as a duplicate.
    """
    ids = list({p.msg_id for p in batch if p.reason is None})
    owners: dict[str, str] = dict(con.execute(
        "SELECT msg_id, vehicle_id FROM ingested_messages WHERE msg_id IN (SELECT unnest($ids))",
        {"ids": ids},
    ).fetchall()) if ids else {}
    parts = Partition([], [], [])
    conflicts = 0
    for index, prepared in enumerate(batch):
        owner = owners.get(prepared.msg_id)
        if prepared.reason is not None:
            parts.rejected.append((index, prepared.reason))
        elif owner is None:
            owners[prepared.msg_id] = prepared.vehicle_id
            parts.accepted.append(index)
        elif owner == prepared.vehicle_id:
            parts.duplicates.append(index)
        else:
            conflicts += 1
            parts.rejected.append((index, (
                f"msg_id conflict: msg_id {prepared.msg_id!r} already landed for vehicle "
                f"{owner!r}; vehicle {prepared.vehicle_id!r} sent it again (a replayed or "
                f"forged message)")))
    return replace(parts, conflicts=conflicts)


def write(con: duckdb.DuckDBPyConnection, accepted: Sequence[Prepared]) -> LandResult:
    """Insert the rows of valid, new messages and record their ids (inside a transaction)."""
    telemetry = [p for p in accepted if p.columns is not None]
    dtcs = [p.message for p in accepted if isinstance(p.message, contract.DtcBatch)]
    result = LandResult(
        messages_landed=len(accepted),
        telemetry_rows=inserts.insert_telemetry(
            con, [p.columns for p in telemetry if p.columns is not None],
            [p.vehicle_id for p in telemetry], [p.msg_id for p in telemetry]),
        dtc_rows=inserts.insert_dtc(con, dtcs),
        truth_rows=inserts.insert_truth(
            con, [p.message for p in accepted if isinstance(p.message, contract.TruthRecord)]),
        health_rows=inserts.insert_health(
            con, [p.message for p in accepted if isinstance(p.message, contract.HealthReport)]),
        dtc_vehicle_ids=tuple(sorted({d.vehicle_id for d in dtcs if d.events})),
    )
    inserts.insert_ingested(con, [p.msg_id for p in accepted], [p.vehicle_id for p in accepted],
                            [p.kind for p in accepted], [p.item.topic for p in accepted],
                            [p.n_rows for p in accepted])
    return result

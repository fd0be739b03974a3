"""Landing wire messages in DuckDB: decode, validate, deduplicate, insert in bulk, in one go.

This module knows nothing of MQTT, so the exactly-once logic can be tested and replayed
(dead letters, backfills) without a broker. A batch lands in ONE transaction: either every
row of every message in it is committed, together with the ``ingested_messages`` rows that
make redelivery harmless, or nothing is and the caller must not acknowledge the batch.

Telemetry never becomes one Python object per sample: :mod:`pipeline.ingest.columnar` turns the
arrays of a whole batch's payloads into Arrow arrays at once and validates them with
vectorised checks.
Anything that cannot land (oversize, not JSON, another schema version, a topic that does
not match the payload, a value or time that fails validation, a boolean where a number
belongs, a ``msg_id`` that already landed for another vehicle) becomes a dead letter with its
reason, in the same transaction as the good rows. Every dead letter records its payload's
size and SHA-256; an oversize one keeps only its first :data:`KEPT_BYTES`, because whole
oversize payloads let a handful of floods fill the store (30 messages of 20 MB once put
629 MB in ``dead_letters``) while their head is enough to tell who sent what.

A retained message comes back from the broker at every subscription, i.e. at every start of
ingest. A valid one is a harmless duplicate (its ``msg_id`` has landed); an invalid one
would become a new dead letter each time, so a retained copy whose topic and payload hash
match a dead letter already kept is acknowledged and counted (``retained_repeats``), not
kept again.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from edge.wire import ContractError, contract
from pipeline.errors import TransientPipelineError
from pipeline.ingest import inserts
from pipeline.ingest.columnar import (
    MAX_TS,
    MIN_TS,
    Samples,
    samples_columns,
    telemetry_samples,
)
from pipeline.ingest.receipts import Outcome, outcomes_of

log = logging.getLogger(__name__)

KEPT_BYTES: Final = 64 * 1024
"""How much of an oversize payload its dead letter keeps (with the whole one's size and hash)."""

_TOPIC = {"telemetry": contract.telemetry_topic, "dtc": contract.dtc_topic,
          "health": contract.health_topic, "truth": contract.truth_topic,
          "vehicle_info": contract.vehicle_info_topic}
_KIND = {contract.TelemetryBatch: "telemetry", contract.DtcBatch: "dtc",
         contract.HealthReport: "health", contract.TruthRecord: "truth",
         contract.VehicleInfo: "vehicle_info"}


class LandingError(TransientPipelineError):
    """A batch could not be committed (it was rolled back; nothing of it is acknowledged)."""


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message as it came off the broker; ``received_at`` is Unix time in seconds.

    An oversize message may arrive cut (see :func:`inbound`): ``payload`` is then only its
    first :data:`KEPT_BYTES`, ``size`` the whole payload's length and ``sha256`` the whole
    payload's hex digest, so nothing downstream ever holds the rest.
    """

    topic: str
    payload: bytes
    received_at: float
    retained: bool = False
    """The broker's stored copy of a retained message (MQTT retain flag on delivery)."""
    size: int | None = None
    """Bytes of the whole payload when ``payload`` holds only its head; None: it is whole."""
    sha256: str | None = None
    """Hex SHA-256 of the whole payload when ``payload`` holds only its head."""

    @property
    def wire_size(self) -> int:
        """Bytes of the whole payload as it was published."""
        return len(self.payload) if self.size is None else self.size

    @property
    def truncated(self) -> bool:
        """Whether ``payload`` lacks part of what was published (it cannot be landed)."""
        return self.wire_size > len(self.payload)

    def digest(self) -> str:
        """Hex SHA-256 of the whole payload as published."""
        return self.sha256 if self.sha256 is not None else hashlib.sha256(self.payload).hexdigest()


def inbound(topic: str, payload: bytes, received_at: float, retained: bool = False
            ) -> InboundMessage:
    """An :class:`InboundMessage`, cut to its head at once when ``payload`` is oversize.

    For a subscriber that gets whole payloads (paho's stock client): the oversize body is
    then dropped as soon as it is hashed, not held in the batch until the flush.
    """
    if len(payload) <= contract.MAX_PAYLOAD_BYTES:
        return InboundMessage(topic, payload, received_at, retained)
    return InboundMessage(topic, payload[:KEPT_BYTES], received_at, retained, len(payload),
                          hashlib.sha256(payload).hexdigest())


@dataclass(frozen=True, slots=True)
class Prepared:
    """An inbound message after decoding and topic checks, before any database work.

    Either ``reason`` says why it must be dead-lettered, or it is valid: telemetry then
    carries its parsed ``samples`` (Arrow arrays are made for a whole batch at once, in
    :func:`validate`), every other kind its decoded ``message``. Decoding is kept apart from
    landing so a subscriber can decode while it waits for a batch to fill, and knows the
    batch's row count without decoding twice.
    """

    item: InboundMessage
    reason: str | None = None
    kind: str = ""
    msg_id: str = ""
    vehicle_id: str = ""
    message: contract.Message | None = None
    samples: Samples | None = None

    @property
    def telemetry_rows(self) -> int:
        """Signal samples this message carries (0 unless it is valid telemetry)."""
        return len(self.samples.ts) if self.samples is not None else 0

    @property
    def n_rows(self) -> int:
        """Rows this message produces in its table."""
        message = self.message
        if isinstance(message, contract.DtcBatch):
            return len(message.events)
        if isinstance(message, contract.TruthRecord):
            return len(message.components)
        if isinstance(message, contract.HealthReport | contract.VehicleInfo):
            return 1
        return self.telemetry_rows


@dataclass(frozen=True, slots=True)
class Validated:
    """A batch after :func:`validate`: messages (failures now carry a reason) and the rows
    of every message with samples, as one Arrow record batch.

    ``rows[i]`` is how many rows message i has in ``telemetry``, in batch order (0 for other
    kinds and for samples that did not convert).
    """

    batch: list[Prepared]
    telemetry: pa.RecordBatch
    rows: list[int]


@dataclass(frozen=True, slots=True)
class LandResult:
    """What one call landed, skipped and dead-lettered.

    ``dtc_vehicle_ids`` names the vehicles that got new ``dtc_events`` rows, sorted.
    ``msg_id_conflicts`` counts the dead letters (among ``dead_letters``) whose ``msg_id``
    had already landed for another vehicle. ``retained_repeats`` counts retained copies of
    messages already kept as dead letters: acknowledged, not kept again.
    """

    messages_landed: int = 0
    telemetry_rows: int = 0
    dtc_rows: int = 0
    truth_rows: int = 0
    health_rows: int = 0
    vehicle_info_rows: int = 0
    """Vehicle-info reports landed (a repeat of a vehicle's known report updates its row)."""
    duplicates: int = 0
    dead_letters: int = 0
    dtc_vehicle_ids: tuple[str, ...] = ()
    msg_id_conflicts: int = 0
    retained_repeats: int = 0


def prepare(item: InboundMessage) -> Prepared:
    """Decode ``item`` and check its size, schema, fields and topic (no database work)."""
    size = item.wire_size
    if size > contract.MAX_PAYLOAD_BYTES:
        return Prepared(item, f"oversize: payload of {size} bytes exceeds the limit of "
                              f"{contract.MAX_PAYLOAD_BYTES}")
    if item.truncated:  # cut below the limit: not something ingest makes, but never land it
        return Prepared(item, f"incomplete: only {len(item.payload)} of the payload's {size} "
                              f"bytes were kept")
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
                    samples=telemetry_samples(doc))


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
    if isinstance(message, contract.HealthReport | contract.VehicleInfo):
        return [message.ts]
    return []


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


def land_prepared(con: duckdb.DuckDBPyConnection, batch: Sequence[Prepared], *,
                  outcomes: list[Outcome] | None = None) -> LandResult:
    """Land prepared messages in one transaction, each ``msg_id`` at most once ever.

    Ids already in ``ingested_messages`` for the same vehicle, and repeats inside the batch,
    count as duplicates; an id that landed for another vehicle, and invalid messages, become
    ``dead_letters`` rows with their reason. ``outcomes``, when given, gets what became of
    each message (for its receipt), once the transaction has committed and never before.

    Raises:
        LandingError: the transaction failed and was rolled back; do not acknowledge.
    """
    checked = validate(batch)
    with transaction(con):
        parts = partition(con, checked.batch)
        result = write(con, checked, parts.accepted)
        dead = [(checked.batch[i].item, reason) for i, reason in parts.rejected]
        for item, reason in dead:
            log.warning("dead-lettering a message on %s: %s", item.topic, reason)
        store_dead_letters(con, dead)
    if outcomes is not None:
        outcomes += outcomes_of(checked.batch, parts.accepted, parts.duplicates,
                                [*(i for i, _ in parts.rejected), *parts.repeats])
    for i in parts.repeats:
        log.info("a retained message on %s is already a dead letter; not kept again",
                 checked.batch[i].item.topic)
    return replace(result, duplicates=len(parts.duplicates), dead_letters=len(dead),
                   msg_id_conflicts=parts.conflicts, retained_repeats=len(parts.repeats))


def store_dead_letters(con: duckdb.DuckDBPyConnection,
                       dead: Sequence[tuple[InboundMessage, str]]) -> None:
    """Insert ``(message, reason)`` pairs into ``dead_letters`` (inside a transaction).

    Each row records the payload's size and SHA-256; an oversize payload keeps only its
    first :data:`KEPT_BYTES`, anything else is kept whole so ``deadletter replay`` can land it.
    """
    inserts.insert_dead_letters(
        con, [item.received_at for item, _ in dead], [item.topic for item, _ in dead],
        [reason for _, reason in dead], [_kept(item) for item, _ in dead],
        [item.wire_size for item, _ in dead], [item.digest() for item, _ in dead])


def _kept(item: InboundMessage) -> bytes:
    if item.wire_size > contract.MAX_PAYLOAD_BYTES:
        return item.payload[:KEPT_BYTES]
    return item.payload


def validate(batch: Sequence[Prepared]) -> Validated:
    """Convert the batch's telemetry samples to Arrow in one go and check them; messages
    whose values or times fail become rejects with the reason."""
    positions = [i for i, p in enumerate(batch) if p.samples is not None]
    telemetry, counts, bad = samples_columns([s for i in positions
                                              if (s := batch[i].samples) is not None])
    checked = list(batch)
    rows = [0] * len(batch)
    for index, position in enumerate(positions):
        rows[position] = counts[index]
    for index, reason in bad.items():
        checked[positions[index]] = Prepared(batch[positions[index]].item, reason)
    return Validated(checked, telemetry, rows)


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
    refused because their ``msg_id`` belongs to another vehicle. ``repeats`` are retained
    copies of messages already kept as dead letters (skipped, like duplicates).
    """

    accepted: list[int]
    duplicates: list[int]
    rejected: list[tuple[int, str]]
    conflicts: int = 0
    repeats: list[int] = field(default_factory=list)


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
    conflicted: set[int] = set()
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
            conflicted.add(index)
            parts.rejected.append((index, (
                f"msg_id conflict: msg_id {prepared.msg_id!r} already landed for vehicle "
                f"{owner!r}; vehicle {prepared.vehicle_id!r} sent it again (a replayed or "
                f"forged message)")))
    if any(batch[i].item.retained for i, _ in parts.rejected):
        kept, repeats = _without_kept_retained(con, batch, parts.rejected)
        parts = replace(parts, rejected=kept, repeats=repeats)
    return replace(parts, conflicts=sum(1 for i, _ in parts.rejected if i in conflicted))


def _without_kept_retained(con: duckdb.DuckDBPyConnection, batch: Sequence[Prepared],
                           rejected: Sequence[tuple[int, str]]
                           ) -> tuple[list[tuple[int, str]], list[int]]:
    """Split ``rejected`` into letters to keep and retained copies of letters already kept.

    A retained copy repeats a letter when a dead letter with its topic and payload hash is
    in the store, or comes earlier in this batch (the live copy and the retained one can
    arrive together after a restart).
    """
    keys = [(batch[i].item.topic, batch[i].item.digest()) for i, _ in rejected]
    digests = list({digest for _, digest in keys})
    seen: set[tuple[str, str]] = {
        (str(topic), str(digest)) for topic, digest in con.execute(
            "SELECT DISTINCT topic, payload_sha256 FROM dead_letters "
            "WHERE payload_sha256 IN (SELECT unnest($digests))", {"digests": digests},
        ).fetchall()}
    kept: list[tuple[int, str]] = []
    repeats: list[int] = []
    for (index, reason), key in zip(rejected, keys, strict=True):
        if batch[index].item.retained and key in seen:
            repeats.append(index)
        else:
            seen.add(key)
            kept.append((index, reason))
    return kept, repeats


def write(con: duckdb.DuckDBPyConnection, checked: Validated, positions: Sequence[int]
          ) -> LandResult:
    """Insert the rows of the messages at ``positions`` (valid and new) and record their ids
    (inside a transaction)."""
    accepted = [checked.batch[i] for i in positions]
    telemetry = [i for i in positions if checked.batch[i].samples is not None]
    dtcs = [p.message for p in accepted if isinstance(p.message, contract.DtcBatch)]
    result = LandResult(
        messages_landed=len(accepted),
        telemetry_rows=inserts.insert_telemetry(
            con, _rows_of(checked, telemetry), [checked.rows[i] for i in telemetry],
            [checked.batch[i].vehicle_id for i in telemetry],
            [checked.batch[i].msg_id for i in telemetry]),
        dtc_rows=inserts.insert_dtc(con, dtcs),
        truth_rows=inserts.insert_truth(
            con, [p.message for p in accepted if isinstance(p.message, contract.TruthRecord)]),
        health_rows=inserts.insert_health(
            con, [p.message for p in accepted if isinstance(p.message, contract.HealthReport)]),
        vehicle_info_rows=inserts.insert_vehicle_info(
            con, [p.message for p in accepted if isinstance(p.message, contract.VehicleInfo)]),
        dtc_vehicle_ids=tuple(sorted({d.vehicle_id for d in dtcs if d.events})),
    )
    inserts.insert_ingested(con, [p.msg_id for p in accepted], [p.vehicle_id for p in accepted],
                            [p.kind for p in accepted], [p.item.topic for p in accepted],
                            [p.n_rows for p in accepted])
    return result


def _rows_of(checked: Validated, positions: Sequence[int]) -> pa.RecordBatch:
    """The telemetry rows of the messages at ``positions`` (all of them, without a copy,
    when every message with rows is among them)."""
    wanted = np.zeros(len(checked.rows), dtype=bool)
    wanted[list(positions)] = True
    has_rows = np.asarray(checked.rows, dtype=np.int64)
    if wanted[has_rows > 0].all():
        return checked.telemetry
    return checked.telemetry.filter(pa.array(np.repeat(wanted, has_rows)))

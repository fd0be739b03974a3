"""Dead letters: what ingest could not land, kept raw with its reason, and landed again later.

A message is dead-lettered instead of retried when retrying cannot help until someone fixes
something: a payload that is not JSON, another schema version, a topic that does not match
the payload, a value or time that fails validation, an oversize message, a vehicle that is
not registered, a vehicle over its rate limit. After the fix (a new contract version, a
corrected producer, a registered vehicle, an explained flood) ``replay`` lands them through
the same path as live traffic, so exactly-once still holds.

An oversize message is kept as its first bytes only, with the whole payload's size and
SHA-256 (see :mod:`pipeline.ingest.landing`): enough to find its sender, not enough to land
it. ``replay`` leaves such a letter pending with a reason that says so; only the sender can
send it again, within the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final

import duckdb
import pyarrow as pa

from edge.wire import contract
from pipeline.ingest.admission import registered_ids, unknown_vehicle_reason
from pipeline.ingest.inserts import insert_arrow
from pipeline.ingest.landing import (
    InboundMessage,
    LandResult,
    Prepared,
    partition,
    prepare,
    transaction,
    validate,
    write,
)

_SIZE_AND_HASH: Final = ("coalesce(payload_bytes, octet_length(payload)), "
                         "coalesce(payload_sha256, sha256(payload))")
"""A row written without them (by hand, say) describes its payload as kept."""
_SIZE_AND_HASH_BEFORE_009: Final = "octet_length(payload), sha256(payload)"
"""The same for a store that migration 009 has not reached yet (read-only readers)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One row of ``dead_letters``.

    ``payload_bytes`` and ``payload_sha256`` describe the payload as it was published;
    ``payload`` holds all of it, or only its head for an oversize message (``truncated``).
    """

    id: int
    received_at: datetime
    topic: str
    reason: str
    payload: bytes
    replayed_at: datetime | None
    payload_bytes: int
    payload_sha256: str

    @property
    def truncated(self) -> bool:
        """Whether only the head of the payload was kept (the letter cannot be replayed)."""
        return self.payload_bytes > len(self.payload)


def list_dead_letters(con: duckdb.DuckDBPyConnection, limit: int = 50,
                      pending_only: bool = False) -> list[DeadLetter]:
    """The most recent dead letters, newest first (replayed ones too unless ``pending_only``)."""
    where = "WHERE replayed_at IS NULL " if pending_only else ""
    return _letters(con, f"{where}ORDER BY id DESC LIMIT $limit", {"limit": limit})


def unreplayable_letters(con: duckdb.DuckDBPyConnection, ids: Sequence[int] | None = None
                         ) -> list[DeadLetter]:
    """Pending letters (all, or only ``ids``) that kept only the head of their payload.

    Needs a store migrated to 009 (any read-write connection is).
    """
    where = "WHERE replayed_at IS NULL AND payload_bytes > octet_length(payload)"
    params: dict[str, object] = {}
    if ids is not None:
        where += " AND id IN (SELECT unnest($ids::BIGINT[]))"
        params["ids"] = list(ids)
    return _letters(con, where + " ORDER BY id", params)


def _letters(con: duckdb.DuckDBPyConnection, tail: str, params: dict[str, object]
             ) -> list[DeadLetter]:
    migrated = con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = "
                           "'dead_letters' AND column_name = 'payload_sha256'").fetchone()
    size_and_hash = _SIZE_AND_HASH if migrated and migrated[0] else _SIZE_AND_HASH_BEFORE_009
    rows = con.execute(
        f"SELECT id, received_at, topic, reason, payload, replayed_at, {size_and_hash} "
        f"FROM dead_letters {tail}", params,
    ).fetchall()
    return [DeadLetter(int(r[0]), r[1], str(r[2]), str(r[3]), bytes(r[4]), r[5], int(r[6]),
                       str(r[7])) for r in rows]


def unreplayable_reason(size: int, kept: int, sha256: str) -> str:
    """What a letter kept as its head only says on replay (why it cannot land, what to do)."""
    return (f"oversize: payload of {size} bytes exceeds the limit of "
            f"{contract.MAX_PAYLOAD_BYTES}; only its first {kept} bytes were kept "
            f"(sha256 {sha256}), so it cannot be replayed: the sender must send it again "
            f"in messages within the limit")


def replay_dead_letters(con: duckdb.DuckDBPyConnection, ids: Sequence[int] | None = None,
                        *, require_registered_vehicles: bool = True) -> LandResult:
    """Try again to land dead letters not yet replayed (all of them, or only ``ids``).

    Run after a fix. Letters that land now, or whose ``msg_id`` has landed meanwhile for the
    same vehicle, get ``replayed_at``; the rest stay with their reason updated to today's.
    The backend checks of live ingest apply, except the rate limit (a replay is the
    operator's decision): a vehicle must be registered by now (unless
    ``require_registered_vehicles`` is False), and a ``msg_id`` of another vehicle stays
    refused. All of it happens in one transaction.

    Raises:
        LandingError: the transaction failed and was rolled back.
    """
    with transaction(con):
        letters = _pending_letters(con, ids)
        batch = [Prepared(item, unreplayable_reason(item.wire_size, len(item.payload),
                                                    item.digest()))
                 if item.truncated else prepare(item) for _, item in letters]
        if require_registered_vehicles:
            known = registered_ids(con)
            batch = [p if p.reason is not None or p.vehicle_id in known
                     else Prepared(p.item, unknown_vehicle_reason(p.vehicle_id))
                     for p in batch]
        checked = validate(batch)
        parts = partition(con, checked.batch)
        result = write(con, checked, parts.accepted)
        done = [letters[i][0] for i in parts.accepted + parts.duplicates]
        if done:
            con.execute("UPDATE dead_letters SET replayed_at = now() "
                        "WHERE id IN (SELECT unnest($ids))", {"ids": done})
        _update_reasons(con, [(letters[i][0], reason) for i, reason in parts.rejected])
    return replace(result, duplicates=len(parts.duplicates), dead_letters=len(parts.rejected),
                   msg_id_conflicts=parts.conflicts)


def _pending_letters(con: duckdb.DuckDBPyConnection, ids: Sequence[int] | None
                     ) -> list[tuple[int, InboundMessage]]:
    sql = (f"SELECT id, epoch(received_at), topic, payload, {_SIZE_AND_HASH} "
           "FROM dead_letters WHERE replayed_at IS NULL")
    params: dict[str, object] = {}
    if ids is not None:
        sql += " AND id IN (SELECT unnest($ids::BIGINT[]))"
        params["ids"] = list(ids)
    rows = con.execute(sql + " ORDER BY id", params).fetchall()
    return [(int(r[0]), InboundMessage(str(r[2]), bytes(r[3]), float(r[1]), size=int(r[4]),
                                       sha256=str(r[5]))) for r in rows]


def _update_reasons(con: duckdb.DuckDBPyConnection, reasons: Sequence[tuple[int, str]]) -> None:
    if not reasons:
        return
    insert_arrow(con, pa.table({
        "id": pa.array([r[0] for r in reasons], pa.int64()),
        "reason": pa.array([r[1] for r in reasons], pa.string()),
    }), "UPDATE dead_letters SET reason = batch.reason FROM batch WHERE dead_letters.id = batch.id")

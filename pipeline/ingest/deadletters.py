"""Dead letters: what ingest could not land, kept raw with its reason, and landed again later.

A message is dead-lettered instead of retried when retrying cannot help until someone fixes
something: a payload that is not JSON, another schema version, a topic that does not match
the payload, a value or time that fails validation, an oversize message, a vehicle that is
not registered, a vehicle over its rate limit. After the fix (a new contract version, a
corrected producer, a registered vehicle, an explained flood) ``replay`` lands them through
the same path as live traffic, so exactly-once still holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import duckdb
import pyarrow as pa

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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One row of ``dead_letters``."""

    id: int
    received_at: datetime
    topic: str
    reason: str
    payload: bytes
    replayed_at: datetime | None


def list_dead_letters(con: duckdb.DuckDBPyConnection, limit: int = 50,
                      pending_only: bool = False) -> list[DeadLetter]:
    """The most recent dead letters, newest first (replayed ones too unless ``pending_only``)."""
    where = "WHERE replayed_at IS NULL " if pending_only else ""
    rows = con.execute(
        "SELECT id, received_at, topic, reason, payload, replayed_at FROM dead_letters "
        f"{where}ORDER BY id DESC LIMIT $limit", {"limit": limit},
    ).fetchall()
    return [DeadLetter(int(r[0]), r[1], str(r[2]), str(r[3]), bytes(r[4]), r[5]) for r in rows]


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
        batch = [prepare(item) for _, item in letters]
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
    insert_arrow(con, pa.table({
        "id": pa.array([r[0] for r in reasons], pa.int64()),
        "reason": pa.array([r[1] for r in reasons], pa.string()),
    }), "UPDATE dead_letters SET reason = batch.reason FROM batch WHERE dead_letters.id = batch.id")

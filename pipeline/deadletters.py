"""Dead letters: what ingest could not land, kept raw with its reason, and landed again later.

A message is dead-lettered instead of retried when retrying cannot help until someone fixes
something: a payload that is not JSON, another schema version, a topic that does not match
the payload, a value or time that fails validation, an oversize message. After the fix (a
new contract version, a corrected producer, a corrected topic map) ``replay`` lands them
through the same path as live traffic, so exactly-once still holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import duckdb
import pyarrow as pa

from pipeline.inserts import insert_arrow
from pipeline.landing import (
    InboundMessage,
    LandResult,
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


def replay_dead_letters(con: duckdb.DuckDBPyConnection,
                        ids: Sequence[int] | None = None) -> LandResult:
    """Try again to land dead letters not yet replayed (all of them, or only ``ids``).

    Run after a fix. Letters that land now, or whose ``msg_id`` has landed meanwhile, get
    ``replayed_at``; the rest stay with their reason updated to today's. All of it happens
    in one transaction.

    Raises:
        LandingError: the transaction failed and was rolled back.
    """
    with transaction(con):
        letters = _pending_letters(con, ids)
        batch = validate([prepare(item) for _, item in letters])
        accepted, duplicates, rejected = partition(con, batch)
        result = write(con, [batch[i] for i in accepted])
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
    insert_arrow(con, pa.table({
        "id": pa.array([r[0] for r in reasons], pa.int64()),
        "reason": pa.array([r[1] for r in reasons], pa.string()),
    }), "UPDATE dead_letters SET reason = batch.reason FROM batch WHERE dead_letters.id = batch.id")

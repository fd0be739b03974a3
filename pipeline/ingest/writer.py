"""The ingest thread's store work: batch decoded messages, land them, count, call hooks.

Kept apart from the MQTT session (``pipeline.ingest.service``) so the rules of what happens to a
batch read in one place: each message is decoded and passes the backend checks
(:mod:`pipeline.ingest.admission`) as it arrives; the batch lands in one transaction; if the
database refuses it, each message is tried alone, so one message the database cannot take
(a poison message) is dead-lettered with the database's reason while the rest lands. If
every message fails alone too, the fault is the store's, not the data's: nothing is
acknowledged and the broker redelivers the lot after a reconnect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Sequence
from contextlib import nullcontext
from dataclasses import fields

import duckdb

from edge.wire import contract
from pipeline.ingest.admission import RATE_LIMIT, Admission, Refusal
from pipeline.ingest.landing import (
    InboundMessage,
    LandResult,
    Prepared,
    land_prepared,
    prepare,
    store_dead_letters,
    transaction,
)
from pipeline.ingest.receipts import Outcome, outcomes_of
from pipeline.ingest.stats import StatsBoard

log = logging.getLogger(__name__)

AfterCommit = Callable[[duckdb.DuckDBPyConnection, LandResult], None]
"""Called after each commit and ack, with the connection (or cursor) the batch landed on."""
Maintenance = Callable[[duckdb.DuckDBPyConnection], None]
"""Periodic work on the writer's connection between batches (exports, snapshots)."""


def merge(results: Sequence[LandResult]) -> LandResult:
    """Field-wise sum of several results (``dtc_vehicle_ids`` as a sorted union)."""
    totals: dict[str, object] = {}
    for field in fields(LandResult):
        if field.name == "dtc_vehicle_ids":
            totals[field.name] = tuple(sorted({v for r in results for v in r.dtc_vehicle_ids}))
        else:
            totals[field.name] = sum(getattr(r, field.name) for r in results)
    return LandResult(**totals)  # type: ignore[arg-type]


class BatchWriter:
    """Collects decoded messages and lands them on ``con`` (used by the ingest thread only).

    ``admission`` (optional) refuses messages of unregistered vehicles and of vehicles over
    their rate limit; they stay in the batch as dead letters, so they are acknowledged after
    the commit like the rest, and counted once that commit succeeds.

    ``rows`` and ``bytes`` say how full the pending batch is (telemetry rows, and payload
    bytes held: an oversize message counts only the head it keeps), so the caller can land
    it on either before it grows past what it should hold in memory. ``urgent`` says the
    batch holds a fault-code message reporting one of ``critical_codes`` (not as cleared),
    which the caller lands at once instead of waiting for its batch window.

    ``hook_lock``, when several writers share one ``after_commit`` hook (one per ingest
    session), makes their calls of it take turns, so the hook never runs twice at once.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, board: StatsBoard,
                 after_commit: AfterCommit | None, admission: Admission | None = None, *,
                 critical_codes: Collection[str] = (),
                 hook_lock: threading.Lock | None = None) -> None:
        self._con, self._board, self._after_commit = con, board, after_commit
        self._admission = admission
        self._critical = frozenset(code.strip().upper() for code in critical_codes)
        self._hook_lock = hook_lock
        self._pending: list[Prepared] = []
        self._refused: dict[str, int] = {}
        self._refused_flushed: dict[str, int] = {}
        self.rows = 0
        self.bytes = 0
        self.urgent = False
        self.outcomes: list[Outcome] = []
        """What the last flush did with each message, for the receipts (empty if it failed)."""

    def add(self, item: InboundMessage) -> None:
        """Decode and check ``item`` now (while the batch fills); keep it for the next flush."""
        prepared = prepare(item)
        if prepared.reason is None and self._admission is not None:
            refusal = self._admission.refuse(prepared.vehicle_id, prepared.n_rows)
            if refusal is not None:
                self._count_refusal(refusal)
                prepared = Prepared(item, refusal.reason)
        self._pending.append(prepared)
        self.rows += prepared.telemetry_rows
        self.bytes += len(item.payload)
        if not self.urgent and prepared.reason is None and self._critical:
            self.urgent = self._reports_critical(prepared.message)

    def _reports_critical(self, message: contract.Message | None) -> bool:
        """Whether ``message`` reports a critical fault code as present (a clear is not news
        that cannot wait)."""
        if not isinstance(message, contract.DtcBatch):
            return False
        return any(not event.cleared and event.code.strip().upper() in self._critical
                   for event in message.events)

    def _count_refusal(self, refusal: Refusal) -> None:
        refused = self._refused
        if refusal.check == RATE_LIMIT:
            refused["rate_limited"] = refused.get("rate_limited", 0) + 1
            refused["rate_limited_rows"] = refused.get("rate_limited_rows", 0) + refusal.rows
        else:
            refused["unknown_vehicles"] = refused.get("unknown_vehicles", 0) + 1

    def flush(self) -> LandResult | None:
        """Land the pending batch; None when nothing of it was committed (do not ack)."""
        batch, self._pending, self.rows, self.bytes = self._pending, [], 0, 0
        self.urgent = False
        self.outcomes = []
        # Counted in committed(); a batch that does not commit comes back and is counted then.
        self._refused_flushed, self._refused = self._refused, {}
        if self._admission is not None and self._admission.limiter is not None:
            self._admission.limiter.maybe_prune()
        if not batch:
            return LandResult()
        try:
            return land_prepared(self._con, batch, outcomes=self.outcomes)
        except Exception as exc:
            log.exception("landing %d messages failed", len(batch))
            result = self._isolate(batch, exc) if len(batch) > 1 else None
        # Counted once the attempt is over and no transaction is open any more.
        self._board.add(flush_failures=1)
        return result

    def _isolate(self, batch: Sequence[Prepared], first: Exception) -> LandResult | None:
        log.info("trying the %d messages of the failed batch one by one", len(batch))
        results: list[LandResult] = []
        refused: list[tuple[Prepared, str]] = []
        for prepared in batch:
            try:
                results.append(land_prepared(self._con, [prepared], outcomes=self.outcomes))
            except Exception as exc:
                refused.append((prepared, f"store refused the message: {exc}"))
        if not results:
            log.error("every message of the batch failed alone too (%s): the store is at "
                      "fault; nothing is acknowledged", first)
            return None
        try:
            with transaction(self._con):
                store_dead_letters(self._con, [(p.item, r) for p, r in refused])
        except Exception:
            log.exception("could not dead-letter %d refused messages", len(refused))
            return None  # what landed is deduplicated on redelivery
        self.outcomes += outcomes_of([p for p, _ in refused], (), (), range(len(refused)))
        self._board.add(isolated=len(refused))
        return merge([*results, LandResult(dead_letters=len(refused))])

    def committed(self, result: LandResult) -> None:
        """Count a committed and acknowledged batch, then call the ``after_commit`` hook."""
        self._board.landed(result, **self._refused_flushed)
        self._refused_flushed = {}
        if self._after_commit is None:
            return
        try:
            with self._hook_lock or nullcontext():
                self._after_commit(self._con, result)
        except Exception:
            log.exception("the after_commit hook failed; ingest carries on")
            self._board.add(hook_failures=1)

    def settle(self, timeout: float) -> None:
        """Wait, at most ``timeout`` seconds, for the work the ``after_commit`` hook handed to
        threads of its own (its ``wait_idle(timeout)``, if it has one: an urgent lead's
        delivery), so that it too runs while the bulk session gives way."""
        wait_idle = getattr(self._after_commit, "wait_idle", None)
        if callable(wait_idle) and timeout > 0:
            try:
                wait_idle(timeout)
            except Exception:
                log.exception("the after_commit hook's wait_idle failed; ingest carries on")

    def maintain(self, work: Maintenance) -> None:
        """Run periodic ``work`` on the writer's connection; count and log its failures."""
        try:
            work(self._con)
        except Exception:
            log.exception("periodic maintenance failed; ingest carries on")
            self._board.add(maintenance_failures=1)
            return
        self._board.add(maintenance_runs=1)

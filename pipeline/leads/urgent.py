"""Critical faults do not wait for the schedule: a lead the moment the fault code lands.

:class:`UrgentLeads` is ingest's ``after_commit`` hook. Ingest's writer thread calls it with
its connection and the batch it just committed; for every vehicle that reported fault codes
it runs advice restricted to that vehicle and to critical severity (immediate contact,
roadside assistance, no booking: a critical lead never waits for a free bay), quoting the raw
signals of the last day rather than building daily features. That is a few milliseconds of the
writer's time. Delivery is handed to a background thread with its own cursor (DuckDB
connections are per thread), so a slow or absent CRM never holds ingest up; whatever it cannot
deliver stays pending in the outbox, where the scheduled delivery retries it.

Its :attr:`UrgentLeads.critical_codes` (the catalogue's critical codes, :func:`critical_codes`)
tell ingest which fault-code messages land at once instead of waiting for their batch window:
ingest sits below the catalogue's layer and learns them from its hook or its caller.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import duckdb

from pipeline.crm.outbox import OutboxSender, deliver_outbox, trust_store
from pipeline.features.fault_codes import CATALOG
from pipeline.leads.advice import StoreFacts, advise
from pipeline.leads.document import LeadSettings

log = logging.getLogger(__name__)

_STOP: Final = object()


def critical_codes() -> frozenset[str]:
    """The catalogue's fault codes of ``critical`` severity: the ones a lead cannot wait for."""
    return frozenset(code for code, info in CATALOG.items() if info.severity == "critical")


@dataclass(frozen=True, slots=True)
class UrgentStats:
    """Counters since the hook was created."""

    batches_seen: int = 0
    leads_issued: int = 0
    delivered: int = 0
    not_delivered: int = 0
    errors: int = 0


class UrgentLeads:
    """``after_commit`` hook: critical leads created in ingest, delivered in the background.

    Args:
        crm_url: the CRM webhook endpoint.
        secret: signing key(s), newest last.
        timeout_s: per delivery request (the background thread waits, not ingest).
        payload_format: ``json``, ``salesforce`` or ``adf``.
        clock: the advice time (tests and simulated fleets pass their own).
        settings: the console's address and the evidence age limit (default: read from the
            environment once, here, not per batch).
    """

    def __init__(self, crm_url: str, secret: str | Sequence[str], *, timeout_s: float = 2.0,
                 payload_format: str = "json",
                 clock: Callable[[], dt.datetime] | None = None,
                 settings: LeadSettings | None = None) -> None:
        self.crm_url, self._secret, self.timeout_s = crm_url, secret, timeout_s
        self.payload_format = payload_format
        self._settings = settings or LeadSettings.from_settings()
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._jobs: queue.Queue[object] = queue.Queue()
        self._cond = threading.Condition()
        self._stats = UrgentStats()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._facts: StoreFacts | None = None
        self.critical_codes = critical_codes()
        """What ingest lands at once (:class:`~pipeline.ingest.service.Ingestor` reads it)."""

    @property
    def stats(self) -> UrgentStats:
        """A snapshot of the counters."""
        with self._cond:
            return self._stats

    def __call__(self, con: duckdb.DuckDBPyConnection, result: Any) -> None:
        """Issue critical leads for the vehicles of ``result.dtc_vehicle_ids``; never raises."""
        vehicles = sorted(set(getattr(result, "dtc_vehicle_ids", None) or ()))
        self._bump(batches_seen=1)
        if not vehicles:
            return
        started = time.perf_counter()
        try:
            report = advise(con, now=self._clock(), vehicles=vehicles, min_severity="critical",
                            daily_features=False, settings=self._settings,
                            facts=self._store_facts(con))
        except Exception:
            log.exception("urgent advice for %s failed; the scheduled advice will retry",
                          vehicles)
            self._bump(errors=1)
            return
        if not report.lead_ids:
            return
        self._bump(leads_issued=len(report.lead_ids))
        rows = con.execute("SELECT event_id FROM outbox WHERE status = 'pending'"
                           " AND list_contains(?, lead_id)", [list(report.lead_ids)]).fetchall()
        log.info("urgent advice for %s issued %d lead(s) in %.1f ms", vehicles,
                 len(report.lead_ids), (time.perf_counter() - started) * 1000)
        self._submit(con, [r[0] for r in rows])

    def _store_facts(self, con: duckdb.DuckDBPyConnection) -> StoreFacts:
        """The catalogue and schema facts, read at the first use (ingest holds the store:
        nobody imports a catalogue into it meanwhile)."""
        if self._facts is None:
            self._facts = StoreFacts.load(con)
        return self._facts

    def warm_up(self, con: duckdb.DuckDBPyConnection) -> None:
        """Pay the first lead's one-off costs now (ingest calls this at start): the store's
        catalogue and schema facts (:class:`~pipeline.leads.advice.StoreFacts`), the
        advice's queries and what they load (DuckDB's JSON extension for the scores'
        thresholds), on an advice for a vehicle id no vehicle has, which writes nothing, and
        the delivery thread with the HTTP client's trust store. Measured on a loaded
        machine, they made the first lead after a start 450 ms slower than the next. Never
        raises."""
        try:
            advise(con, now=self._clock(), vehicles=[""], min_severity="critical",
                   daily_features=False, settings=self._settings,
                   facts=self._store_facts(con))
        except Exception:
            log.exception("warming up the urgent advice failed; the first lead pays for it")
        self._start_delivery(con)

    def _submit(self, con: duckdb.DuckDBPyConnection, event_ids: list[str]) -> None:
        with self._cond:
            self._pending += 1
        self._start_delivery(con)
        self._jobs.put(event_ids)

    def _start_delivery(self, con: duckdb.DuckDBPyConnection) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver_loop, args=(con.cursor(),),
                                                name="urgent-leads", daemon=True)
                self._thread.start()

    def _deliver_loop(self, cursor: duckdb.DuckDBPyConnection) -> None:
        trust_store()  # read before the first lead needs it
        sender: OutboxSender | None = None
        try:
            # One sender for the thread's life: a lead reuses the connection the last one
            # opened (while the CRM keeps it alive) instead of connecting again.
            sender = OutboxSender(self.crm_url, self._secret, self.timeout_s)
        except Exception:
            log.exception("the CRM settings are unusable; urgent leads stay in the outbox")
        try:
            while (job := self._jobs.get()) is not _STOP:
                assert isinstance(job, list)
                self._deliver(cursor, sender, job)
        finally:
            if sender is not None:
                sender.close()
            cursor.close()

    def _deliver(self, cursor: duckdb.DuckDBPyConnection, sender: OutboxSender | None,
                 event_ids: list[str]) -> None:
        started = time.perf_counter()
        try:
            report = deliver_outbox(cursor, url=self.crm_url, secret=self._secret,
                                    now=self._clock(), timeout_s=self.timeout_s,
                                    payload_format=self.payload_format, event_ids=event_ids,
                                    sender=sender)
            log.info("urgent delivery of %d lead(s): %d delivered in %.1f ms", len(event_ids),
                     report.delivered, (time.perf_counter() - started) * 1000)
            self._bump(delivered=report.delivered,
                       not_delivered=report.retrying + report.dead, pending=-1)
        except Exception:
            log.exception("urgent delivery of %s failed; the outbox keeps them", event_ids)
            self._bump(errors=1, not_delivered=len(event_ids), pending=-1)

    def _bump(self, pending: int = 0, **deltas: int) -> None:
        with self._cond:
            values = {k: getattr(self._stats, k) + v for k, v in deltas.items()}
            self._stats = UrgentStats(**{**_asdict(self._stats), **values})
            self._pending += pending
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[UrgentStats], bool], timeout: float) -> bool:
        """Block until ``predicate(stats)`` holds; False if ``timeout`` seconds pass first."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._stats), timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until every handed-over delivery finished; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued deliveries and stop the background thread (call before closing con)."""
        with self._cond:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(_STOP)
            thread.join(timeout)


def _asdict(stats: UrgentStats) -> dict[str, int]:
    return {name: getattr(stats, name) for name in UrgentStats.__slots__}

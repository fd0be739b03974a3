"""What an ingest process has done so far: counters shared between its threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from pipeline.ingest.landing import LandResult


@dataclass(frozen=True, slots=True)
class IngestStats:
    """Counters since the ingestor started; ``last_flush_at`` is Unix time or None.

    ``hook_failures`` counts exceptions raised by the ``after_commit`` hook and
    ``maintenance_failures`` those of the periodic maintenance (exports, snapshots); both
    are logged and never stop ingest. ``isolated`` counts messages dead-lettered because
    the database refused them alone while the rest of their batch landed.

    The backend checks' dead letters (all also in ``dead_letters``): ``unknown_vehicles``
    (vehicle not registered), ``rate_limited`` messages and their ``rate_limited_rows``
    (vehicle over its rate limit), ``msg_id_conflicts`` (a ``msg_id`` that had landed for
    another vehicle). ``retained_repeats`` counts retained copies of messages already kept as
    dead letters (the broker resends a retained message at every subscription): acknowledged,
    not kept again. ``receipts_published`` counts the receipts sent to vehicles after
    commits (one per vehicle per batch).
    """

    messages_received: int = 0
    messages_landed: int = 0
    telemetry_rows: int = 0
    dtc_rows: int = 0
    truth_rows: int = 0
    health_rows: int = 0
    vehicle_info_rows: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    flush_failures: int = 0
    isolated: int = 0
    hook_failures: int = 0
    maintenance_runs: int = 0
    maintenance_failures: int = 0
    unknown_vehicles: int = 0
    rate_limited: int = 0
    rate_limited_rows: int = 0
    msg_id_conflicts: int = 0
    retained_repeats: int = 0
    receipts_published: int = 0
    last_flush_at: float | None = None


class StatsBoard:
    """The current :class:`IngestStats`, replaced atomically and waited on by tests and CLIs."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._stats = IngestStats()

    @property
    def stats(self) -> IngestStats:
        with self._cond:
            return self._stats

    def wait_for(self, predicate: Callable[[IngestStats], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._stats), timeout)

    def add(self, **increments: int) -> None:
        """Add to counters by name, e.g. ``add(messages_received=250)``."""
        with self._cond:
            s = self._stats
            self._stats = replace(s, **{k: getattr(s, k) + v for k, v in increments.items()})
            self._cond.notify_all()

    def landed(self, result: LandResult, **refused: int) -> None:
        """Count a committed batch, and the backend checks' refusals in it by counter name."""
        with self._cond:
            s = self._stats
            if refused:
                s = replace(s, **{k: getattr(s, k) + v for k, v in refused.items()})
            self._stats = replace(
                s, messages_landed=s.messages_landed + result.messages_landed,
                telemetry_rows=s.telemetry_rows + result.telemetry_rows,
                dtc_rows=s.dtc_rows + result.dtc_rows, truth_rows=s.truth_rows + result.truth_rows,
                health_rows=s.health_rows + result.health_rows,
                vehicle_info_rows=s.vehicle_info_rows + result.vehicle_info_rows,
                duplicates=s.duplicates + result.duplicates,
                dead_letters=s.dead_letters + result.dead_letters,
                msg_id_conflicts=s.msg_id_conflicts + result.msg_id_conflicts,
                retained_repeats=s.retained_repeats + result.retained_repeats,
                last_flush_at=time.time(),
            )
            self._cond.notify_all()

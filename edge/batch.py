"""Columnar batches on their way into the spool, with one message id per batch.

Samples go into three parallel lists, which are cleared in place, never replaced, so code
that holds their bound ``append``/``extend`` (the agent's compiled sinks) keeps writing into
the open batch; the batch is spooled as one telemetry message when it
holds ``batch_signals`` samples or when the agent says so (its interval passed, or it stops).
Events that must not wait for the next batch (fault codes, crank events) are spooled at once,
in a higher eviction class; the open batch is spooled just before them, so that every append
can carry the source's checkpoint (all frames up to it are then in the spool). Only what has
been spooled is counted: ``signals_spooled`` is the number of rows the backend will land.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Protocol

from edge import contract
from edge.spool import Priority, Spool


class Notifiable(Protocol):
    """Whatever drains the spool: told when it has grown."""

    def notify(self) -> None:
        """The spool has new entries."""


class BatchWriter:
    """Builds telemetry batches for one vehicle and appends them (and events) to its spool."""

    def __init__(self, vehicle_id: str, spool: Spool, publisher: Notifiable | None, *,
                 batch_signals: int,
                 checkpoint: Callable[[], tuple[str, int] | None] | None = None) -> None:
        self.vehicle_id = vehicle_id
        self._checkpoint = checkpoint
        self._spool = spool
        self._publisher = publisher
        self.batch_signals = batch_signals
        self._session = uuid.uuid4().hex[:12]
        self._seq = 0
        self.ts: list[float] = []
        self.signal: list[str] = []
        self.value: list[float] = []
        self.signals_spooled = self.messages = 0

    def full(self) -> bool:
        """True when the open batch should be spooled now."""
        return len(self.ts) >= self.batch_signals

    def flush(self) -> None:
        """Spool the open batch as one telemetry message (nothing when it is empty)."""
        if not self.ts:
            return
        batch = contract.TelemetryBatch(self.next_msg_id(), self.vehicle_id, self.ts,
                                        self.signal, self.value)
        self._append(contract.telemetry_topic(self.vehicle_id), contract.encode(batch),
                     Priority.TELEMETRY)
        self.signals_spooled += len(self.ts)
        self.ts.clear()  # encoded already: the lists can be reused
        self.signal.clear()
        self.value.clear()

    def spool_event(self, samples: list[tuple[float, str, float]]) -> None:
        """Spool event samples at once, as their own telemetry message in the event class."""
        self.flush()
        batch = contract.TelemetryBatch(self.next_msg_id(), self.vehicle_id,
                                        [s[0] for s in samples], [s[1] for s in samples],
                                        [s[2] for s in samples])
        self._append(contract.telemetry_topic(self.vehicle_id), contract.encode(batch),
                     Priority.EVENT)
        self.signals_spooled += len(samples)

    def spool_dtcs(self, events: list[contract.DtcEvent]) -> None:
        """Spool fault-code events at once, in the class evicted last."""
        self.flush()
        message = contract.DtcBatch(self.next_msg_id(), self.vehicle_id, events)
        self._append(contract.dtc_topic(self.vehicle_id), contract.encode(message),
                     Priority.FAULT)

    def next_msg_id(self) -> str:
        """Unique per message: vehicle, this run's session, a sequence number."""
        self._seq += 1
        return f"{self.vehicle_id}-{self._session}-{self._seq:010d}"

    def _append(self, topic: str, payload: bytes, priority: Priority) -> None:
        checkpoint = self._checkpoint() if self._checkpoint is not None else None
        self._spool.append(topic, payload, priority=priority, checkpoint=checkpoint)
        self.messages += 1
        if self._publisher is not None:
            self._publisher.notify()

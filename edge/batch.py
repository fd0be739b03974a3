"""Columnar batches on their way into the spool, with one message id per batch.

Samples go into three parallel lists, which are cleared in place, never replaced, so code
that holds their bound ``append``/``extend`` (the agent's compiled sinks) keeps writing into
the open batch; the batch is spooled as one telemetry message when it holds
``batch_signals`` samples or when the agent says so (its interval passed, or it stops).
Events that must not wait for the next batch (fault codes, crank events, vehicle info) are
spooled at once, in a higher eviction class; the open batch is spooled just before them, in the same
transaction, so that every append can carry the source's checkpoint (all frames up to it are
then in the spool). Only what has been spooled is counted: ``signals_spooled`` is the number
of rows the backend will land.

While the agent's read loop runs, writes go through a background writer
(:meth:`BatchWriter.start_background`): the loop hands each write over and goes on decoding
while the writer waits for the disk (``synchronous=FULL`` still makes every commit durable
before anything is counted or published), and writes that queued up meanwhile share one
transaction, so one fsync. A failed write stops the writer, and the loop gets the
:class:`~edge.errors.SpoolError` at its next hand-over, as it would have got it directly.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Callable
from typing import Protocol

from edge.errors import SpoolError
from edge.spool import Priority, Spool
from edge.wire import contract

_Staged = tuple[str, bytes, Priority, int]
"""A message ready for the spool: topic, payload, eviction class, samples it carries."""
_Write = tuple[list[_Staged], tuple[str, int] | None]
"""Messages to store in one transaction, and the checkpoint that goes with them."""

_BACKLOG = 16
"""Writes the background writer may have waiting before the read loop waits for it."""


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
        self._topic = contract.telemetry_topic(vehicle_id)
        self.ts: list[float] = []
        self.signal: list[str] = []
        self.value: list[float] = []
        self.signals_spooled = self.messages = 0
        self._staged: list[_Staged] = []
        self._queue: queue.Queue[_Write | None] | None = None
        self._writer: threading.Thread | None = None
        self._failure: SpoolError | None = None
        self._held: list[_Write] | None = None

    def full(self) -> bool:
        """True when the open batch should be spooled now."""
        return len(self.ts) >= self.batch_signals

    def flush(self) -> None:
        """Spool the open batch as one telemetry message (nothing when it is empty)."""
        if self._stage_batch():
            self._commit()

    def spool_event(self, samples: list[tuple[float, str, float]]) -> None:
        """Spool event samples at once, as their own telemetry message in the event class."""
        self._stage_batch()
        batch = contract.TelemetryBatch(self.next_msg_id(), self.vehicle_id,
                                        [s[0] for s in samples], [s[1] for s in samples],
                                        [s[2] for s in samples])
        self._staged.append((self._topic, contract.encode(batch), Priority.EVENT, len(samples)))
        self._commit()

    def spool_dtcs(self, events: list[contract.DtcEvent]) -> None:
        """Spool fault-code events at once, in the class evicted last."""
        self._stage_batch()
        message = contract.DtcBatch(self.next_msg_id(), self.vehicle_id, events)
        self._staged.append((contract.dtc_topic(self.vehicle_id), contract.encode(message),
                             Priority.FAULT, 0))
        self._commit()

    def spool_info(self, info: contract.VehicleInfo) -> None:
        """Spool a vehicle-info message at once, in the class evicted last (it is rare and
        says which car the gateway is in)."""
        self._stage_batch()
        self._staged.append((contract.vehicle_info_topic(self.vehicle_id), contract.encode(info),
                             Priority.FAULT, 0))
        self._commit()

    def next_msg_id(self) -> str:
        """Unique per message: vehicle, this run's session, a sequence number."""
        self._seq += 1
        return f"{self.vehicle_id}-{self._session}-{self._seq:010d}"

    def start_background(self) -> None:
        """Hand writes to a background writer from now on (see the module docstring)."""
        if self._writer is not None:
            return
        self._queue = queue.Queue(_BACKLOG)
        self._writer = threading.Thread(target=self._write_behind, args=(self._queue,),
                                        name=f"spool-{self.vehicle_id}", daemon=True)
        self._writer.start()

    def stop_background(self, *, check: bool = True) -> None:
        """Wait until every handed-over write is stored, then write directly again.

        Raises:
            SpoolError: (with ``check``) a background write failed; neither it nor any write
                after it was stored or counted, so no checkpoint passes over lost frames.
        """
        if self._writer is None or self._queue is None:
            return
        self.release()
        self._queue.put(None)
        self._writer.join()
        self._writer = self._queue = None
        if check:
            self._raise_failure()

    def hold(self) -> None:
        """Keep background writes in hand until :meth:`release` (the agent's block of frames).

        A block read at once is decoded in a few milliseconds, and batches and events it
        completes are handed to the writer together at its end: one hand-over and one
        transaction (one fsync) for all of them, each with its own samples and message id as
        before, under the checkpoint of the last. Nothing is counted or published before it
        is stored, as ever. Without a background writer there is nothing to hold.
        """
        if self._queue is not None:
            self._held = []

    def release(self) -> None:
        """Hand over what :meth:`hold` kept, as one write."""
        held, self._held = self._held, None
        if held and self._queue is not None:
            self._queue.put(([m for staged, _ in held for m in staged], held[-1][1]))

    def _stage_batch(self) -> bool:
        """Encode the open batch and stage it for the next write; False when it is empty."""
        if not self.ts:
            return False
        self._stage_columns(self.ts, self.signal, self.value)
        self.ts.clear()  # encoded already: the lists can be reused
        self.signal.clear()
        self.value.clear()
        return True

    def _stage_columns(self, ts: list[float], signal: list[str], value: list[float]) -> None:
        """Stage samples as one telemetry message, or as halves while it would be oversize.

        The backend dead-letters a payload over ``contract.MAX_PAYLOAD_BYTES``; long signal
        names with a large ``batch_signals`` could get there, so such a batch is split instead
        (each part with its own message id) and every sample still lands.
        """
        batch = contract.TelemetryBatch(self.next_msg_id(), self.vehicle_id, ts, signal, value)
        payload = contract.encode(batch)
        if len(payload) > contract.MAX_PAYLOAD_BYTES and len(ts) > 1:
            self._seq -= 1  # the id was not used: the parts take the next ones
            half = len(ts) // 2
            self._stage_columns(ts[:half], signal[:half], value[:half])
            self._stage_columns(ts[half:], signal[half:], value[half:])
            return
        self._staged.append((self._topic, payload, Priority.TELEMETRY, len(ts)))

    def _commit(self) -> None:
        """Write what is staged, with the checkpoint of where the source stands now."""
        staged, self._staged = self._staged, []
        checkpoint = self._checkpoint() if self._checkpoint is not None else None
        self._raise_failure()
        if self._held is not None:
            self._held.append((staged, checkpoint))
        elif self._queue is not None:
            self._queue.put((staged, checkpoint))
        else:
            self._write(staged, checkpoint)

    def _write(self, staged: list[_Staged], checkpoint: tuple[str, int] | None) -> None:
        self._spool.append_many([(topic, payload, priority) for topic, payload, priority, _
                                 in staged], checkpoint=checkpoint)
        self.messages += len(staged)
        self.signals_spooled += sum(samples for *_, samples in staged)
        if self._publisher is not None:
            self._publisher.notify()

    def _write_behind(self, writes: queue.Queue[_Write | None]) -> None:
        """The background writer: everything waiting goes into one transaction."""
        while True:
            waiting = [writes.get()]
            while True:
                try:
                    waiting.append(writes.get_nowait())
                except queue.Empty:
                    break
            work = [w for w in waiting if w is not None]
            if work and self._failure is None:
                try:
                    # The last checkpoint covers every frame of the writes before it.
                    self._write([m for staged, _ in work for m in staged], work[-1][1])
                except SpoolError as exc:
                    self._failure = exc
            if len(work) < len(waiting):
                return

    def _raise_failure(self) -> None:
        if self._failure is not None:  # stays set: nothing is written after a failed write
            raise self._failure

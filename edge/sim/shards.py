"""Simulated fleets larger than one process can host: one agent process per shard.

One process can host only about a hundred vehicles (:mod:`edge.sim.capacity`: paho's
``select()`` and the descriptors each vehicle keeps), so :func:`run_fleet_processes` cuts a
larger fleet into even, consecutive shards and runs each with :func:`edge.sim.fleet.run_fleet`
in a process of its own: the same real agents, spools and publishers as a small fleet, nothing
bypassed. The parent starts the children, paces them, relays their progress, stops all of
them as soon as one fails (or the parent is interrupted) and adds their summaries into one
:class:`~edge.sim.fleet.FleetResult`, so the output is the same whatever the fleet size. A
fleet that fits the calling process runs there, with no child at all.

How parent and child talk, and why so:

* The parent writes the child's job as one JSON line on its stdin and then keeps that pipe
  open: the job carries the broker URL, which may hold a password, and a command line is
  visible to every user of the machine. When the pipe ends (the parent stops the child, or
  the parent died, even by ``kill -9``) the child exits at once, so no agent process outlives
  its fleet.
* The child writes JSON lines on its stdout: ``{"ready": true}`` once its agents are
  connected, ``{"day": n}`` after each simulated day, then ``{"result": ...}`` or
  ``{"error": ..., "kind": ...}``, the edge error that stopped it, which the parent raises
  again as the same class (one line on the command line, as for one process). Before its
  first day and between days it waits for a ``go`` line: the parent releases the first day
  once every child is ready, and then hands out days a few children at a time
  (:class:`_Fleet` says why). Its log goes to the parent's stderr, each line naming the
  child's vehicles.
* Children ignore SIGINT: a Ctrl-C reaches the whole process group, and the parent alone
  decides how its children stop.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import orjson

from edge import errors
from edge.agent import AgentStats
from edge.errors import EdgeError, FleetProcessError
from edge.identity import identity_of
from edge.reference import reference_dbc
from edge.rules import load_rules
from edge.sim.capacity import plan_shards
from edge.sim.fleet import FleetResult, run_fleet
from edge.sim.simulator import VehicleSpec

log = logging.getLogger(__name__)

CHILD_BOOT: Final = ("import sys; sys.modules['asammdf'] = None; "
                     "from edge.sim.shards import child_main; sys.exit(child_main())")
"""What an agent process runs (``python -c``). python-can imports asammdf, and with it pandas,
polars and pyarrow, only to offer MF4 files, which a simulated vehicle never touches: about
120 MB and a second of start-up per process, measured. A ``None`` in ``sys.modules`` makes
that import fail the way python-can expects where asammdf is not installed."""


def _cores() -> int:
    """Cores this process may run on (a container's share, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


STARTING_AT_ONCE: Final = _cores()
"""Children importing and connecting at the same time: one per core."""
SIMULATING_AT_ONCE: Final = STARTING_AT_ONCE
"""Children simulating a day at the same time: one per core (see :class:`_Fleet`)."""
GO: Final = b"go\n"
"""The parent's word to a child: simulate your next day."""
STOP_WAIT_S: Final = 10.0
"""How long a child told to stop may take before it is killed."""
_ORPHANED: Final = 3
"""The child's exit status when its stdin ended before its fleet did."""


@dataclass(frozen=True, slots=True)
class ShardJob:
    """Everything one agent process needs: sent to it as JSON, never on its command line."""

    label: str
    specs: tuple[VehicleSpec, ...]
    broker_url: str
    rules: str
    days: int
    start_ts: float
    spool_dir: str
    snapshot_s: float
    drain_timeout_s: float
    connect_timeout_s: float | None
    log_level: int
    receipts: bool = True
    receipt_timeout_s: float = 30.0

    def to_json(self) -> bytes:
        """One JSON line."""
        return orjson.dumps(dataclasses.asdict(self)) + b"\n"

    @classmethod
    def from_json(cls, line: bytes) -> ShardJob:
        """The job :meth:`to_json` wrote."""
        fields = orjson.loads(line)
        fields["specs"] = tuple(VehicleSpec(**spec) for spec in fields["specs"])
        return cls(**fields)


def result_to_json(result: FleetResult) -> dict[str, Any]:
    """A fleet result as plain JSON values (``per_vehicle`` as a mapping of dicts)."""
    return dataclasses.asdict(result)


def result_from_json(fields: dict[str, Any]) -> FleetResult:
    """The :class:`FleetResult` :func:`result_to_json` made."""
    per_vehicle = {vehicle: AgentStats(**stats)
                   for vehicle, stats in fields["per_vehicle"].items()}
    return FleetResult(**{**fields, "per_vehicle": per_vehicle})


def merge_results(results: Sequence[FleetResult], days: int) -> FleetResult:
    """The fleet's totals from its shards' (every counter summed, vehicles in shard order)."""
    totals: dict[str, Any] = {}
    for field in dataclasses.fields(FleetResult):
        if field.name == "days":
            totals["days"] = days
        elif field.name == "per_vehicle":
            totals["per_vehicle"] = {vehicle: stats for result in results
                                     for vehicle, stats in result.per_vehicle.items()}
        else:
            totals[field.name] = sum(getattr(result, field.name) for result in results)
    return FleetResult(**totals)


def run_fleet_processes(specs: Sequence[VehicleSpec], broker_url: str, rules_path: Path, *,
                        days: int, start_ts: float, spool_dir: Path, snapshot_s: float = 1.0,
                        on_day: Callable[[int], None] | None = None,
                        drain_timeout_s: float = 300.0,
                        connect_timeout_s: float | None = None,
                        processes: int | None = None,
                        per_process: int | None = None,
                        receipts: bool = True,
                        receipt_timeout_s: float = 30.0) -> FleetResult:
    """:func:`~edge.sim.fleet.run_fleet` for a fleet of any size: in as many agent processes
    as the descriptor limit needs (:func:`~edge.sim.capacity.plan_shards`), or in this one.

    The children start a few at a time (:data:`STARTING_AT_ONCE`) and each reports when its
    agents are connected; the first simulated day begins everywhere once all are. Started
    all at once, a 2,000-vehicle fleet's imports and connections shared two cores with the
    first days' traffic, and agents missed the connection timeout.

    Args:
        specs: the vehicles, as for :func:`~edge.sim.fleet.run_fleet`; so are ``broker_url``,
            ``days``, ``start_ts``, ``spool_dir``, ``snapshot_s``, ``drain_timeout_s``,
            ``connect_timeout_s``, ``receipts`` and ``receipt_timeout_s``, for every process.
        rules_path: the collection rules' file (each process loads it; checked here first).
        on_day: called once per simulated day that every process has finished.
        processes, per_process: see :func:`~edge.sim.capacity.plan_shards`.

    Raises:
        FleetCapacityError: the processes asked for cannot host the fleet.
        BrokerUnreachableError: an agent had no connection within ``connect_timeout_s``.
        FleetProcessError: an agent process ended without its summary.
        EdgeError: what else stopped an agent process (the same class as in the child).
    """
    plan = plan_shards(len(specs), processes=processes, per_process=per_process)
    rules = load_rules(rules_path)  # a bad file is one error here, not one per process
    if plan.in_process:
        return run_fleet(specs, broker_url, rules, days=days, start_ts=start_ts,
                         spool_dir=spool_dir, snapshot_s=snapshot_s, on_day=on_day,
                         drain_timeout_s=drain_timeout_s, connect_timeout_s=connect_timeout_s,
                         receipts=receipts, receipt_timeout_s=receipt_timeout_s,
                         identity=identity_of([reference_dbc()], rules_path))
    log.info("%d vehicles in %d agent processes (at most %d each)", len(specs),
             plan.processes, plan.per_process)
    level = logging.getLogger().getEffectiveLevel()
    jobs = []
    for shard in plan.shards:
        chosen = tuple(specs[i] for i in shard)
        jobs.append(ShardJob(f"{chosen[0].vehicle_id}..{chosen[-1].vehicle_id}", chosen,
                             broker_url, str(rules_path), days, start_ts, str(spool_dir),
                             snapshot_s, drain_timeout_s, connect_timeout_s, level,
                             receipts, receipt_timeout_s))
    fleet = _Fleet(jobs)
    try:
        return merge_results(fleet.run(days, on_day), days)
    finally:
        fleet.stop()


_Events = queue.Queue[tuple[int, dict[str, Any] | None]]


class _Child:
    """One agent process: its pipes, and a thread turning its stdout into events."""

    def __init__(self, index: int, job: ShardJob, events: _Events) -> None:
        self.index, self.job = index, job
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD_BOOT], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, close_fds=True)
        assert self.proc.stdout is not None
        self.tell(job.to_json())
        threading.Thread(target=self._read, args=(self.proc.stdout, events), daemon=True,
                         name=f"fleet-shard-{index}").start()

    def tell(self, line: bytes) -> None:
        """Write to its stdin; a child that died has closed it, and its stdout says so."""
        stdin = self.proc.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError):
            stdin.write(line)
            stdin.flush()

    def _read(self, stream: IO[bytes], events: _Events) -> None:
        for line in stream:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("agent process %s wrote a line that is not JSON: %r",
                            self.job.label, line[:200])
                continue
            if isinstance(event, dict):
                events.put((self.index, event))
        events.put((self.index, None))

    def stop(self) -> None:
        """End its stdin (it exits at once if still running); kill it if it does not."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("agent process %s did not stop within %.0f s: killed", self.job.label,
                        STOP_WAIT_S)
            self.proc.kill()
            self.proc.wait()


class _Fleet:
    """The parent's side: start the children a few at a time, let a few at a time simulate a
    day, collect their summaries, and stop every one of them however it ends.

    Each child waits for a ``go`` line before each simulated day and reports the day when it
    is done. Days are handed out round-robin, to at most :data:`SIMULATING_AT_ONCE` children
    at a time, so no shard runs more than one day ahead of another and the cores are never
    shared by more simulators than there are of them. Let loose together, 21 processes of
    95 vehicles on two cores each had a busy simulator thread and 190 MQTT and spool threads
    waking up to take the GIL from it; every hand-over waited for a core, the MQTT clients
    went unserved past their keepalive, and the broker dropped a thousand of them. While a
    child waits for its turn its agents keep publishing what its last day spooled.
    """

    def __init__(self, jobs: Sequence[ShardJob]) -> None:
        self._jobs = list(jobs)
        self._children: list[_Child] = []
        self._events: _Events = queue.Queue()

    def run(self, days: int, on_day: Callable[[int], None] | None) -> list[FleetResult]:
        """Every child's result, in shard order; raises on the first failure."""
        total = len(self._jobs)
        results: dict[int, FleetResult] = {}
        reached = [-1] * total
        shown, ready, ended = -1, 0, 0
        turns: collections.deque[int] = collections.deque()
        """Children waiting for their next day, in the order they asked."""
        busy: set[int] = set()
        """Children simulating a day now."""
        while len(self._children) < min(STARTING_AT_ONCE, total):
            self._start_next()
        while ended < total:
            try:
                index, event = self._events.get(timeout=1.0)
            except queue.Empty:
                continue
            child = self._children[index]
            if event is None:
                code = child.proc.wait()
                if index not in results:
                    raise FleetProcessError(
                        f"the agent process for vehicles {child.job.label} exited with status "
                        f"{code} before its summary (its log above says why)")
                ended += 1
            elif "error" in event:
                raise _error_of(str(event.get("kind", "")), str(event["error"]))
            elif "ready" in event:
                ready += 1
                turns.append(index)
                if len(self._children) < total:
                    self._start_next()
            elif "day" in event:
                busy.discard(index)
                reached[index] = int(event["day"])
                if reached[index] < days - 1:
                    turns.append(index)
                while on_day is not None and shown < min(reached):
                    shown += 1
                    on_day(shown)
            elif "result" in event:
                busy.discard(index)
                results[index] = result_from_json(event["result"])
            # Nobody simulates before every agent of the fleet is connected.
            while ready == total and turns and len(busy) < SIMULATING_AT_ONCE:
                chosen = turns.popleft()
                busy.add(chosen)
                self._children[chosen].tell(GO)
        return [results[index] for index in range(total)]

    def _start_next(self) -> None:
        index = len(self._children)
        self._children.append(_Child(index, self._jobs[index], self._events))

    def stop(self) -> None:
        """Stop every child still running (each is waited for, or killed)."""
        for child in self._children:
            child.stop()


def _error_of(kind: str, message: str) -> EdgeError:
    """The child's edge error as the same class here (a FleetProcessError if unknown)."""
    found = getattr(errors, kind, None)
    if isinstance(found, type) and issubclass(found, EdgeError):
        return found(message)
    return FleetProcessError(message)


def child_main() -> int:
    """An agent process: read the job from stdin, run it, write events on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    job = ShardJob.from_json(sys.stdin.buffer.readline())
    logging.basicConfig(level=job.log_level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s [{job.label}]: %(message)s")
    turns = threading.Semaphore(0)
    threading.Thread(target=_follow_parent, args=(turns,), daemon=True, name="parent").start()
    out = sys.stdout.buffer
    lock = threading.Lock()

    def emit(event: dict[str, Any]) -> None:
        with lock:
            out.write(orjson.dumps(event) + b"\n")
            out.flush()

    def ready() -> None:  # connected: wait for the first turn
        emit({"ready": True})
        turns.acquire()

    def day_done(day: int) -> None:  # and wait for the next turn, unless that was the last
        emit({"day": day})
        if day < job.days - 1:
            turns.acquire()

    try:
        result = run_fleet(job.specs, job.broker_url, load_rules(Path(job.rules)),
                           days=job.days, start_ts=job.start_ts, spool_dir=Path(job.spool_dir),
                           snapshot_s=job.snapshot_s, on_day=day_done,
                           drain_timeout_s=job.drain_timeout_s,
                           connect_timeout_s=job.connect_timeout_s, on_ready=ready,
                           receipts=job.receipts, receipt_timeout_s=job.receipt_timeout_s,
                           identity=identity_of([reference_dbc()], Path(job.rules)))
    except EdgeError as exc:
        emit({"error": str(exc), "kind": type(exc).__name__})
        return 1
    emit({"result": result_to_json(result)})
    return 0


def _follow_parent(turns: threading.Semaphore) -> None:
    """Release a turn for each ``go`` line from the parent; exit at once when the parent
    closes stdin (it is stopping this child, or it is gone: nothing is left to report to)."""
    pending = b""
    # The descriptor itself, not sys.stdin: a daemon thread blocked inside a buffered reader
    # makes the interpreter abort at exit, when it takes that reader's lock.
    while chunk := os.read(sys.stdin.fileno(), 4096):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line == GO.strip():
                turns.release()
    os._exit(_ORPHANED)

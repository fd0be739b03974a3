"""How many simulated vehicles one process can host, and how a fleet is cut into processes.

paho-mqtt 2.2 waits on its socket with ``select()``, which cannot watch a file descriptor
numbered :data:`FD_SETSIZE` (1,024) or above: a client whose socket gets such a number fails
every attempt and reconnects forever, silently. Every simulated vehicle holds
:data:`FDS_PER_VEHICLE` descriptors for as long as it runs, so one process hosts about a
hundred vehicles and a larger fleet must be spread over several processes
(:mod:`edge.sim.shards` runs them). This module is the arithmetic alone, so the rules can be
checked without starting anything: how many descriptors a process has left, how many
vehicles fit, and which vehicles each process gets.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge.errors import ConfigError, FleetCapacityError

FD_SETSIZE: Final = 1024
"""``select()`` watches descriptors below this number only (glibc's fixed ``FD_SETSIZE``)."""
FDS_PER_VEHICLE: Final = 10
"""Descriptors one vehicle keeps open: its spool's three SQLite connections with a database
and a WAL file each (6), and the MQTT socket with paho's wake-up socket pair and one spare
(4). Measured on mosquitto with paho 2.2 and SQLite in WAL mode; a test holds it true."""
FD_RESERVE: Final = 64
"""Descriptors a process needs beside its vehicles: standard streams, the reference DBC and
rules while they load, the interpreter's own files, the parent's pipes."""
CHILD_START_FDS: Final = 3
"""What a freshly started agent process has open: stdin, stdout, stderr (the parent passes
no other descriptor down)."""


def descriptor_limit() -> int:
    """The highest descriptor number + 1 a paho client in this process can use: the smaller
    of ``FD_SETSIZE`` and the process's soft ``RLIMIT_NOFILE`` (``ulimit -n``)."""
    try:
        import resource
    except ImportError:  # not a Unix: select() is the only limit we know of
        return FD_SETSIZE
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return FD_SETSIZE if soft == resource.RLIM_INFINITY else min(FD_SETSIZE, int(soft))


def open_descriptors() -> int:
    """How many descriptors this process has open now (Linux ``/proc``, else ``/dev/fd``).

    The kernel hands out the lowest free number, so after opening ``k`` more the highest
    number in use is about ``open_descriptors() + k``: the count, not the highest number now,
    is what decides whether ``k`` more stay under the limit.
    """
    for listing in (Path("/proc/self/fd"), Path("/dev/fd")):
        try:
            return max(0, len(os.listdir(listing)) - 1)  # less the listing's own descriptor
        except OSError:
            continue
    return CHILD_START_FDS


def vehicle_capacity(open_fds: int, limit: int | None = None) -> int:
    """How many vehicles fit in a process that has ``open_fds`` descriptors open already."""
    top = descriptor_limit() if limit is None else limit
    return max(0, (top - open_fds - FD_RESERVE) // FDS_PER_VEHICLE)


def child_capacity(limit: int | None = None) -> int:
    """How many vehicles a freshly started agent process can host."""
    return vehicle_capacity(CHILD_START_FDS, limit)


def check_fits(vehicles: int) -> None:
    """Refuse to host ``vehicles`` in this process if their sockets would pass the limit.

    Raises:
        FleetCapacityError: they need more descriptors than this process has below the limit.
    """
    here = vehicle_capacity(open_descriptors())
    if vehicles > here:
        raise FleetCapacityError(
            f"{vehicles} vehicles in one process need about {vehicles * FDS_PER_VEHICLE} file "
            f"descriptors, and paho's select() cannot use one numbered {descriptor_limit()} "
            f"or above: this process has room for {here}; run the fleet in several processes "
            f"(fleetcare sim run --processes)")


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """Which vehicles each agent process hosts.

    ``shards`` are consecutive index ranges into the fleet, in order, together covering it
    once; ``per_process`` is the most any process may host; ``in_process`` says the whole
    fleet fits in the calling process, which then runs it itself (no child at all).
    """

    shards: tuple[range, ...]
    per_process: int
    in_process: bool

    @property
    def processes(self) -> int:
        """Agent processes started (0 when the caller runs the fleet itself)."""
        return 0 if self.in_process else len(self.shards)


def plan_shards(vehicles: int, *, processes: int | None = None, per_process: int | None = None,
                capacity: int | None = None, local_capacity: int | None = None) -> ShardPlan:
    """Cut a fleet of ``vehicles`` into as few even shards as the descriptor limit allows.

    Args:
        vehicles: fleet size.
        processes: how many agent processes to use; None takes the fewest that keep every
            process at or under ``per_process`` (more than ``vehicles`` is cut to one each).
        per_process: the most vehicles one process may host; None takes ``capacity``.
        capacity: vehicles a fresh agent process can host (default :func:`child_capacity`).
        local_capacity: vehicles the calling process can still host (default: from its open
            descriptors); a single shard that fits here runs without a child process.

    Raises:
        ConfigError: a count below one (or a negative fleet).
        FleetCapacityError: ``per_process`` above what a process can host, or ``processes``
            too few for the fleet at ``per_process`` each.
    """
    if vehicles < 0:
        raise ConfigError(f"a fleet of {vehicles} vehicles: give 0 or more")
    for flag, value in (("--processes", processes), ("--vehicles-per-process", per_process)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} {value}: give 1 or more")
    room = child_capacity() if capacity is None else capacity
    if room < 1:
        raise FleetCapacityError(
            f"no vehicle fits in an agent process: the descriptor limit is "
            f"{descriptor_limit()} (ulimit -n), and one vehicle needs {FDS_PER_VEHICLE} "
            f"beside the {FD_RESERVE} a process keeps; raise ulimit -n")
    most = room if per_process is None else per_process
    if most > room:
        raise FleetCapacityError(
            f"--vehicles-per-process {most}: that many vehicles hold about "
            f"{most * FDS_PER_VEHICLE} file descriptors, and paho's select() cannot use one "
            f"numbered {descriptor_limit()} or above; at most {room} per process")
    needed = max(1, math.ceil(vehicles / most))
    if processes is None:
        count = needed
    elif processes < needed:
        raise FleetCapacityError(
            f"--processes {processes} would give {math.ceil(vehicles / processes)} vehicles "
            f"to a process that can host {most}: {vehicles} vehicles need {needed} processes "
            f"or more (leave --processes out to get that many)")
    else:
        count = min(processes, max(1, vehicles))
    base, extra = divmod(vehicles, count)
    shards, start = [], 0
    for index in range(count):
        size = base + (1 if index < extra else 0)
        shards.append(range(start, start + size))
        start += size
    here = vehicle_capacity(open_descriptors()) if local_capacity is None else local_capacity
    return ShardPlan(tuple(shards), most, in_process=count == 1 and vehicles <= here)

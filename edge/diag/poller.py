"""Polling OBD-II PIDs on a schedule: each group of PIDs at its own interval, codes too.

Engine speed and vehicle speed change by the second, coolant temperature and battery voltage
by the minute, the odometer slower still; asking for everything at the fastest rate wastes
the bus and the adapter (an ELM327 answers a few dozen requests per second). So PIDs come in
groups with an interval each, the first poll discovers which PIDs the vehicle supports and
unsupported ones are never asked, and fault codes of every status are read on their own
interval. The first poll also asks for the VIN (mode 09 PID 02), once: the tap hands a valid
one to its ``on_vin``, which is how an agent learns which car it is in. Results are
``TapResult``s, the same records the passive tap produces. A first poll no ECU answers (the
car is off) is discovery again at the next one.

:class:`BusPoller` is how ``fleetcare edge run`` asks when a profile says ``poll``: a thread
polling over ISO-TP on a bus object of its own on the agent's CAN channel. Its results are not
published: the agent's passive OBD-II tap hears the ECUs' answers on its own bus object and
publishes them, with the fault codes and VIN, exactly as it would a scan tool's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import can

from edge.diag.errors import DiagLinkError, DiagParseError
from edge.diag.isotp_link import IsoTpLink
from edge.diag.obd_tap import ObdTap
from edge.diag.reader import ObdLink, discover, read_dtcs, read_values, read_vin
from edge.tap import TapResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PollGroup:
    """PIDs read together, every ``interval_s`` seconds."""

    name: str
    pids: tuple[int, ...]
    interval_s: float


DEFAULT_GROUPS = (
    PollGroup("fast", (0x0C, 0x0D, 0x04, 0x11), 1.0),
    PollGroup("slow", (0x05, 0x42, 0x46, 0x2F, 0x5B, 0x5C), 10.0),
    PollGroup("distance", (0xA6, 0x31, 0x21, 0x4E), 60.0),
)


class Poller:
    """Runs due groups against one link; ``poll`` returns what they found."""

    def __init__(self, link: ObdLink, groups: Sequence[PollGroup] = DEFAULT_GROUPS, *,
                 dtc_interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 tap: ObdTap | None = None) -> None:
        self._link = link
        self._groups = tuple(groups)
        self._dtc_interval_s = dtc_interval_s
        self._clock = clock
        self.tap = tap or ObdTap()
        self._next: dict[str, float] = {}
        self._supported: set[int] | None = None
        self.requests_skipped = 0

    def due(self, now: float | None = None) -> list[str]:
        """Names of the groups (and ``dtc``) whose time has come."""
        now = self._clock() if now is None else now
        names = [g.name for g in self._groups] + ["dtc"]
        return [n for n in names if self._next.get(n, 0.0) <= now]

    def next_due(self) -> float:
        """Clock time of the next due group."""
        return min(self._next.values(), default=0.0)

    def poll(self, now: float | None = None) -> TapResult:
        """Read every due group once and schedule it again."""
        now = self._clock() if now is None else now
        if not self._supported:
            found = discover(self._link, self.tap)
            self._supported = {p for pids in found.values() for p in pids}
            read_vin(self._link, self.tap)
        samples: list[tuple[float, str, float]] = []
        dtcs = []
        due = set(self.due(now))
        for group in self._groups:
            if group.name not in due:
                continue
            wanted = [p for p in group.pids if p in self._supported]
            self.requests_skipped += len(group.pids) - len(wanted)
            if wanted:
                samples += read_values(self._link, self.tap, wanted)
            self._next[group.name] = now + group.interval_s
        if "dtc" in due:
            dtcs = read_dtcs(self._link, self.tap)
            self._next["dtc"] = now + self._dtc_interval_s
        return TapResult(tuple(samples), tuple(dtcs))

    def run(self, stop: threading.Event, sink: Callable[[TapResult], None]) -> None:
        """Poll until ``stop`` is set, handing every non-empty result to ``sink``."""
        while not stop.is_set():
            found = self.poll()
            if found.samples or found.dtcs:
                sink(found)
            stop.wait(max(0.0, self.next_due() - self._clock()))


class BusPoller:
    """Asks the car for PIDs and fault codes from a thread, on its own bus object.

    Args:
        interface: the agent's python-can interface (``socketcan``, ``virtual``, ...).
        channel: the agent's CAN channel; this opens a second bus object on it, which sees the
            same traffic (the agent's bus hears the requests and the answers).
        pids: mode 01 PIDs asked every ``every_s`` seconds (those the car does not support
            are never asked, see :class:`Poller`).
        dtc_every_s: seconds between two requests for the fault codes (modes 03, 07, 0A).
        timeout: seconds to wait for an ECU's answer.
    """

    def __init__(self, interface: str, channel: str, pids: Sequence[int], *,
                 every_s: float = 1.0, dtc_every_s: float = 60.0,
                 timeout: float = 1.0) -> None:
        self._bus = can.Bus(interface=interface, channel=channel)
        self._link = IsoTpLink(self._bus, timeout=timeout)
        self.poller = Poller(self._link, [PollGroup("profile", tuple(pids), every_s)],
                             dtc_interval_s=dtc_every_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="obd-poller")
        self.polls = self.failures = 0

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poller.poll()
                self.polls += 1
            except (DiagLinkError, DiagParseError, can.CanError) as exc:
                self.failures += 1  # the car may be off, the next poll asks again
                log.debug("OBD-II poll failed: %s", exc)
            self._stop.wait(max(0.0, self.poller.next_due() - time.monotonic()))

    def stop(self) -> None:
        """Stop polling and release the bus object."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self._link.close()
        self._bus.shutdown()

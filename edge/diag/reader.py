"""Reading a vehicle once over any OBD-II link: protocol, VIN, supported PIDs, values, codes.

The link is anything with ``query(request) -> [(ecu, answer)]``: the ELM327 adapter or the
native ISO-TP client. Discovery follows SAE J1979: PID 0x00 answers a bitmap of PIDs 0x01-0x20,
and when 0x20 is set in it, PID 0x20 answers the next 32, and so on. Values are read at most
six PIDs per request. Clearing codes (mode 04) happens only when the caller asks for it.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.diag.dtc import REQUEST_BY_STATUS
from edge.diag.obd_tap import ObdTap
from edge.diag.pids import PIDS, SUPPORT_PIDS, split_requests
from edge.wire.contract import DtcEvent


class ObdLink(Protocol):
    """A way to ask ECUs: one request in, each answering ECU's complete answer out."""

    def query(self, request: bytes,
              expect: Collection[str] | None = None) -> list[tuple[str, bytes]]:
        """Send ``request`` and return ``(ecu, answer)`` pairs.

        ``expect``, when given, names the ECUs that should answer, so a link may stop waiting
        once they have.
        """


@dataclass
class ObdSnapshot:
    """Everything one read found; ``as_json`` is what ``fleetcare obd read --json`` prints."""

    protocol: str
    vin: str | None = None
    supported: dict[str, list[int]] = field(default_factory=dict)
    values: list[tuple[float, str, float]] = field(default_factory=list)
    dtcs: list[DtcEvent] = field(default_factory=list)
    cleared: bool = False
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict: codes grouped by status, PIDs in hex."""
        codes: dict[str, list[dict[str, str]]] = {s: [] for s in REQUEST_BY_STATUS}
        for event in self.dtcs:
            if not event.cleared:
                codes[event.status].append({"code": event.code, "ecu": event.ecu,
                                            "description": event.description})
        return {
            "protocol": self.protocol, "vin": self.vin,
            "supported_pids": {ecu: [f"{p:02X}" for p in pids]
                               for ecu, pids in self.supported.items()},
            "values": {name: value for _, name, value in self.values},
            "dtcs": codes, "cleared": self.cleared, "errors": self.errors,
        }


def discover(link: ObdLink, tap: ObdTap) -> dict[str, list[int]]:
    """Supported mode 01 PIDs per ECU, following the 0x20/0x40/... chain."""
    for base in SUPPORT_PIDS:
        claim = {ecu for ecu, pids in tap.supported.items() if base in pids}
        if base and not claim:
            break
        for ecu, answer in link.query(bytes([0x01, base]), claim if base else None):
            tap.take(time.time(), ecu, answer)
    return {ecu: sorted(p for p in pids if p not in SUPPORT_PIDS)
            for ecu, pids in sorted(tap.supported.items())}


def read_values(link: ObdLink, tap: ObdTap, pids: Iterable[int],
                per_request: int = 6) -> list[tuple[float, str, float]]:
    """Current values of the given PIDs (those in our table), at most six per request."""
    known = [p for p in pids if p in PIDS]
    samples: list[tuple[float, str, float]] = []
    for group in split_requests(known, per_request):
        claim = {ecu for ecu, have in tap.supported.items() if have.intersection(group)}
        for ecu, answer in link.query(bytes([0x01, *group]), claim or None):
            found = tap.take(time.time(), ecu, answer)
            if found is not None:
                samples += found.samples
    return samples


def read_dtcs(link: ObdLink, tap: ObdTap, statuses: Iterable[str] = tuple(REQUEST_BY_STATUS),
              ) -> list[DtcEvent]:
    """Fault codes of each status (mode 03 stored, 07 pending, 0A permanent) from every ECU."""
    events: list[DtcEvent] = []
    for status in statuses:
        for ecu, answer in link.query(bytes([REQUEST_BY_STATUS[status]])):
            found = tap.take(time.time(), ecu, answer)
            if found is not None:
                events += found.dtcs
    return events


def read_vin(link: ObdLink, tap: ObdTap) -> str | None:
    """The VIN (mode 09 PID 02), validated; None when no ECU gave a valid one."""
    for ecu, answer in link.query(b"\x09\x02"):
        tap.take(time.time(), ecu, answer)
    return tap.vin


def clear_codes(link: ObdLink) -> bool:
    """Mode 04: clear stored codes and freeze frames. True when an ECU confirmed (0x44)."""
    return any(answer[:1] == b"\x44" for _, answer in link.query(b"\x04"))


def read_once(link: ObdLink, protocol: str, *, clear: bool = False) -> ObdSnapshot:
    """One full read: VIN, supported PIDs, their values, codes of each status; clear on demand."""
    tap = ObdTap()
    snapshot = ObdSnapshot(protocol)
    snapshot.supported = discover(link, tap)
    snapshot.vin = read_vin(link, tap)
    wanted = sorted({p for pids in snapshot.supported.values() for p in pids})
    snapshot.values = read_values(link, tap, wanted)
    snapshot.dtcs = read_dtcs(link, tap)
    if clear:
        snapshot.cleared = clear_codes(link)
    if tap.counters.parse_errors:
        snapshot.errors.append(f"{tap.counters.parse_errors} answers could not be decoded")
    return snapshot

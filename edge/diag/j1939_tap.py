"""Passive J1939 decoder: DM1 fault codes (single frame or via TP) and the VIN (PGN 0xFEEC).

Active codes of each source address are tracked from one DM1 to the next: a code in the DM1
is reported ``active`` (the agent spools it at once and again only on its refresh interval),
and a code missing from a later DM1 of the same address is reported cleared. Lamp states and
each code's occurrence count land as samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import can

from edge.diag.dtc import DtcAnswer, DtcTracker
from edge.diag.errors import DiagParseError
from edge.diag.j1939 import (
    LAMPS,
    PGN_DM1,
    PGN_TP_CM,
    PGN_TP_DT,
    PGN_VIN,
    describe_spn_fmi,
    parse_dm1,
    parse_j1939_vin,
    split_id,
)
from edge.diag.vin import validate_vin
from edge.tap import FrameTap, TapResult

_TP_CONTROLS = (16, 32)
"""TP.CM control bytes that open a transfer: 16 RTS (connection), 32 BAM (broadcast)."""


@dataclass
class _Transfer:
    pgn: int
    size: int
    packets: int
    data: bytearray
    next_seq: int = 1


@dataclass
class J1939Counters:
    """DM1s decoded, transport messages completed or abandoned, parse errors."""

    dm1: int = 0
    transfers: int = 0
    transfers_by_pgn: dict[int, int] = field(default_factory=dict)
    broken_transfers: int = 0
    parse_errors: int = 0


class J1939Tap(FrameTap):
    """A ``FrameTap`` for J1939 DM1; ``vin`` holds a valid VIN from PGN 0xFEEC, if any.

    ``on_vin`` is called with the VIN whenever a valid one differs from the last.
    """

    def __init__(self, on_vin: Callable[[str], None] | None = None) -> None:
        self.vin: str | None = None
        self._on_vin = on_vin
        self.counters = J1939Counters()
        self._open: dict[tuple[int, int], _Transfer] = {}
        self._tracker = DtcTracker("j1939", describe_spn_fmi)

    def feed(self, frame: can.Message) -> TapResult | None:
        """Look at one frame; return the fault codes and lamps of a DM1 it completes."""
        if not frame.is_extended_id:
            return None
        pgn, dest, source = split_id(frame.arbitration_id)
        data = bytes(frame.data)
        if pgn == PGN_TP_CM:
            self._open_transfer(source, dest, data)
            return None
        if pgn == PGN_TP_DT:
            done = self._packet(source, dest, data)
            if done is None:
                return None
            pgn, data = done
        return self._message(frame.timestamp, pgn, source, data)

    def _message(self, ts: float, pgn: int, source: int, data: bytes) -> TapResult | None:
        if pgn == PGN_VIN:
            try:
                vin = validate_vin(parse_j1939_vin(data))
            except DiagParseError:
                self.counters.parse_errors += 1
                return None
            if vin != self.vin and self._on_vin is not None:
                self._on_vin(vin)
            self.vin = vin
            return None
        if pgn != PGN_DM1:
            return None
        try:
            dm1 = parse_dm1(data)
        except DiagParseError:
            self.counters.parse_errors += 1
            return None
        self.counters.dm1 += 1
        ecu = f"0x{source:02X}"
        answer = DtcAnswer("active", tuple(c.code for c in dm1.codes))
        prefix = f"J1939.DM1.SA{source:02X}"
        samples = [(ts, f"{prefix}.{name}", float(state))
                   for name, state in zip(LAMPS, dm1.lamps, strict=True)]
        samples += [(ts, f"{prefix}.SPN{c.spn}.FMI{c.fmi}.OccurrenceCount", float(c.occurrences))
                    for c in dm1.codes]
        return TapResult(tuple(samples), tuple(self._tracker.update(ts, ecu, answer)))

    def _open_transfer(self, source: int, dest: int, data: bytes) -> None:
        if len(data) < 8 or data[0] not in _TP_CONTROLS:
            return
        size, packets = data[1] | (data[2] << 8), data[3]
        if packets == 0 or size > packets * 7 or size < 9:
            self.counters.broken_transfers += 1
            return
        pgn = data[5] | (data[6] << 8) | (data[7] << 16)
        if (source, dest) in self._open:
            self.counters.broken_transfers += 1
        self._open[(source, dest)] = _Transfer(pgn, size, packets, bytearray())

    def _packet(self, source: int, dest: int, data: bytes) -> tuple[int, bytes] | None:
        transfer = self._open.get((source, dest))
        if transfer is None or len(data) < 2:
            return None
        if data[0] != transfer.next_seq:
            del self._open[(source, dest)]
            self.counters.broken_transfers += 1
            return None
        transfer.data += data[1:8]
        transfer.next_seq += 1
        if transfer.next_seq <= transfer.packets:
            return None
        del self._open[(source, dest)]
        self.counters.transfers += 1
        by_pgn = self.counters.transfers_by_pgn
        by_pgn[transfer.pgn] = by_pgn.get(transfer.pgn, 0) + 1
        return transfer.pgn, bytes(transfer.data[:transfer.size])

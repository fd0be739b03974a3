"""Decoding CAN frames with one or more DBC files.

All the work is done once, at load time: every DBC is parsed, and one dict maps each frame id
to its cantools message, so decoding a frame is a dict lookup plus cantools' precompiled unpack.
A real bus always carries frames the DBCs do not describe; those are counted per id, never
raised. A decoded value outside its signal's DBC range (often the all-bits-set "not available"
pattern) is counted as invalid and left out, so it is never published as data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cantools
import cantools.database

from edge.errors import DbcError

CAN_EFF_FLAG = 0x80000000
"""Bit 31: how DBC files mark a 29-bit (extended) frame id."""


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """The valid signals of one frame, by DBC signal name, in physical units."""

    message: str
    signals: dict[str, float]


@dataclass
class DecodeCounters:
    """What the decoder saw; every frame lands in exactly one of the first three buckets."""

    decoded: int = 0
    unknown: int = 0
    malformed: int = 0
    invalid_signals: int = 0
    unknown_ids: Counter[int] = field(default_factory=Counter)
    malformed_ids: Counter[int] = field(default_factory=Counter)


def load_dbcs(
    paths: Sequence[str | Path], *, strict: bool = True
) -> list[cantools.database.Database]:
    """Load DBC files, wrapping parser failures into a :class:`DbcError` naming the file."""
    databases = []
    for path in paths:
        try:
            db = cantools.database.load_file(str(path), database_format="dbc", strict=strict)
        except FileNotFoundError as exc:
            raise DbcError(f"DBC file {path} does not exist") from exc
        except Exception as exc:  # cantools raises several unrelated types on bad input
            raise DbcError(f"DBC file {path} does not load: {exc}") from exc
        if not isinstance(db, cantools.database.can.Database):
            raise DbcError(f"{path} is not a CAN database")
        databases.append(db)
    return databases


class Decoder:
    """Turns raw frames into named physical values using any number of DBCs.

    Args:
        databases: loaded cantools databases; on a frame id defined twice, the first wins.
        frame_ids: when given, only these ids are decoded (the rest count as unknown).
    """

    def __init__(
        self,
        databases: Sequence[cantools.database.Database],
        frame_ids: set[int] | None = None,
    ) -> None:
        self._messages: dict[int, cantools.database.can.Message] = {}
        self._ranges: dict[int, dict[str, tuple[float | None, float | None]]] = {}
        for db in databases:
            for message in db.messages:
                key = _frame_key(message.frame_id, message.is_extended_frame)
                if key in self._messages or (frame_ids is not None and key not in frame_ids):
                    continue
                self._messages[key] = message
                self._ranges[key] = {
                    s.name: (s.minimum, s.maximum) for s in message.signals
                }
        self.counters = DecodeCounters()

    @property
    def frame_ids(self) -> set[int]:
        """Keys (``id | CAN_EFF_FLAG`` for extended ids) this decoder knows."""
        return set(self._messages)

    def message_for(self, arbitration_id: int, is_extended: bool) -> str | None:
        """The DBC message name for a frame id, or None when no DBC knows it."""
        message = self._messages.get(_frame_key(arbitration_id, is_extended))
        return message.name if message else None

    def decode(self, arbitration_id: int, is_extended: bool, data: bytes) -> DecodedFrame | None:
        """Decode one frame; None (and a counter) for unknown ids and malformed payloads."""
        key = _frame_key(arbitration_id, is_extended)
        message = self._messages.get(key)
        counters = self.counters
        if message is None:
            counters.unknown += 1
            counters.unknown_ids[key] += 1
            return None
        try:
            raw = message.decode_simple(data, decode_choices=False)
        except Exception:  # cantools raises DecodeError, ValueError or struct errors
            counters.malformed += 1
            counters.malformed_ids[key] += 1
            return None
        counters.decoded += 1
        ranges = self._ranges[key]
        signals: dict[str, float] = {}
        for name, value in raw.items():
            low, high = ranges[name]
            number = float(value)  # type: ignore[arg-type]
            if (low is not None and number < low) or (high is not None and number > high):
                counters.invalid_signals += 1
                continue
            signals[name] = number
        return DecodedFrame(message.name, signals)


def _frame_key(arbitration_id: int, is_extended: bool) -> int:
    """One integer per frame id, distinguishing 11-bit 0x100 from 29-bit 0x100."""
    return (arbitration_id & 0x1FFFFFFF) | CAN_EFF_FLAG if is_extended else arbitration_id

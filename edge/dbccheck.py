"""``fleetcare dbc check``: does each DBC file load, and if not, why.

Every file is loaded strictly first (cantools rejects overlapping signals, signals outside
their message, and similar), then leniently. A file that loads only leniently is usable with
a warning; one that loads in neither mode fails, with the parser's own error (which names the
line and column for syntax errors) so whoever owns the file knows what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cantools
import cantools.database


@dataclass(frozen=True, slots=True)
class DbcReport:
    """The verdict on one file."""

    path: str
    strict: bool
    loads: bool
    messages: int
    signals: int
    error: str

    @property
    def verdict(self) -> str:
        """``ok``, ``lenient`` (loads only non-strictly) or ``fails``."""
        return "ok" if self.strict else "lenient" if self.loads else "fails"


def check_dbc(path: str | Path) -> DbcReport:
    """Load one file strictly, then leniently; never raises."""
    strict_error = ""
    for strict in (True, False):
        try:
            db = cantools.database.load_file(str(path), database_format="dbc", strict=strict)
        except FileNotFoundError:
            return DbcReport(str(path), False, False, 0, 0, "file does not exist")
        except Exception as exc:  # cantools raises many unrelated types on bad input
            error = _explain(exc)
            strict_error = strict_error or error
            continue
        if not isinstance(db, cantools.database.can.Database):
            return DbcReport(str(path), False, False, 0, 0, "not a CAN database")
        signals = sum(len(m.signals) for m in db.messages)
        return DbcReport(str(path), strict, True, len(db.messages), signals,
                         "" if strict else f"strict load: {strict_error}")
    return DbcReport(str(path), False, False, 0, 0, f"{strict_error}; lenient load: {error}"
                     if error != strict_error else strict_error)


def check_all(paths: Iterable[str | Path]) -> list[DbcReport]:
    """Check every file; directories are searched for ``*.dbc``."""
    reports = []
    for path in paths:
        path = Path(path)
        files = sorted(path.rglob("*.dbc")) if path.is_dir() else [path]
        reports += [check_dbc(file) for file in files]
    return reports


def _explain(exc: Exception) -> str:
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"

"""``repair_orders.csv``: its columns, and the checks a file passes before anything is applied.

A file is read whole and every row is checked before one is kept, so a bad export is refused
with all its problems at once (``file:line: column: what is wrong``) and the store never holds
half of it. Extra columns are ignored and named; a vehicle may be given by ``vehicle_id`` or by
``vin`` (resolved through the register's ``vehicles.vin``).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from edge.wire.contract import COMPONENTS
from pipeline.errors import TerminalPipelineError

KINDS: Final = ("unscheduled", "roadside", "preventive", "inspection")
"""``unscheduled``: a repair after a failure; ``roadside``: a breakdown with assistance;
``preventive``: replaced before it failed; ``inspection``: looked at, nothing replaced."""
FAILURE_KINDS: Final = frozenset({"unscheduled", "roadside"})
"""Kinds that mean the component failed on the order's day."""
REQUIRED: Final = ("order_id", "opened_at", "component", "operation_code", "kind")
OPTIONAL: Final = ("vehicle_id", "vin", "odometer_km", "lead_id")
MAX_PROBLEMS: Final = 200
"""Problems listed in one refusal; past this the rest are counted."""
_FUTURE_SLACK: Final = dt.timedelta(days=1)


class RepairOrderFileError(TerminalPipelineError):
    """A repair-order file that cannot be imported; ``problems`` lists every reason."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        lines = [*shown, *([f"... and {more} more"] if more else [])]
        super().__init__(f"{path}: {len(problems)} problem(s), nothing imported:\n"
                         + "\n".join(lines))


@dataclass(frozen=True, slots=True)
class RepairOrder:
    """One validated repair order, as ``repair_orders`` keeps it."""

    order_id: str
    vehicle_id: str
    opened_at: dt.datetime
    odometer_km: float | None
    component: str
    operation_code: str
    kind: str
    lead_id: str | None


@dataclass(frozen=True, slots=True)
class OrderFile:
    """A checked file: its orders and the columns it carried that nobody reads."""

    orders: list[RepairOrder]
    ignored_columns: list[str]


def read_repair_orders(path: Path, register: Mapping[str, str | None], *,
                       now: dt.datetime | None = None) -> OrderFile:
    """Read and check ``path`` against the fleet register (vehicle_id -> registered VIN).

    Raises:
        RepairOrderFileError: the file is unreadable or any row is wrong; every problem listed.
    """
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RepairOrderFileError(path, [f"{path}: cannot read: {exc}"]) from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise RepairOrderFileError(path, [f"{path}:1: header: the file has no header row"])
    header = [cell.strip() for cell in rows[0]]
    problems = _header_problems(path, header)
    if problems:
        raise RepairOrderFileError(path, problems)
    by_vin = {vin.upper(): v for v, vin in register.items() if vin}
    checker = _RowChecker(path, register, by_vin, now or dt.datetime.now(dt.UTC))
    orders = []
    for line, cells in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue
        record = dict(zip(header, (c.strip() for c in cells), strict=False))
        if len(cells) != len(header):
            checker.problem(line, "row", f"{len(cells)} cells for {len(header)} columns")
            continue
        order = checker.check(line, record)
        if order is not None:
            orders.append(order)
    if checker.problems:
        raise RepairOrderFileError(path, checker.problems)
    ignored = [c for c in header if c not in REQUIRED and c not in OPTIONAL]
    return OrderFile(orders, ignored)


def _header_problems(path: Path, header: list[str]) -> list[str]:
    problems = [f"{path}:1: {c}: required column missing" for c in REQUIRED if c not in header]
    if "vehicle_id" not in header and "vin" not in header:
        problems.append(f"{path}:1: vehicle_id: required column missing (or give vin)")
    seen: set[str] = set()
    for column in header:
        if column in seen:
            problems.append(f"{path}:1: {column}: column appears twice")
        seen.add(column)
    return problems


class _RowChecker:
    """Checks rows one by one, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path, register: Mapping[str, str | None], by_vin: dict[str, str],
                 now: dt.datetime) -> None:
        self.path, self.register, self.by_vin, self.now = path, register, by_vin, now
        self.problems: list[str] = []
        self._ids: dict[str, int] = {}

    def problem(self, line: int, column: str, what: str) -> None:
        self.problems.append(f"{self.path}:{line}: {column}: {what}")

    def check(self, line: int, row: dict[str, str]) -> RepairOrder | None:
        before = len(self.problems)
        order_id = self._order_id(line, row.get("order_id", ""))
        vehicle = self._vehicle(line, row.get("vehicle_id", ""), row.get("vin", ""))
        opened = self._timestamp(line, row.get("opened_at", ""))
        odometer = self._odometer(line, row.get("odometer_km", ""))
        component = row.get("component", "")
        if component not in COMPONENTS:
            self.problem(line, "component", f"{component!r} is not one of {', '.join(COMPONENTS)}")
        kind = row.get("kind", "")
        if kind not in KINDS:
            self.problem(line, "kind", f"{kind!r} is not one of {', '.join(KINDS)}")
        code = row.get("operation_code", "")
        if not code:
            self.problem(line, "operation_code", "empty")
        if len(self.problems) > before or vehicle is None or opened is None:
            return None
        return RepairOrder(order_id, vehicle, opened, odometer, component, code, kind,
                           row.get("lead_id") or None)

    def _order_id(self, line: int, order_id: str) -> str:
        if not order_id:
            self.problem(line, "order_id", "empty")
        elif order_id in self._ids:
            self.problem(line, "order_id", f"{order_id!r} again (first on line "
                                           f"{self._ids[order_id]})")
        else:
            self._ids[order_id] = line
        return order_id

    def _vehicle(self, line: int, vehicle_id: str, vin: str) -> str | None:
        if not vehicle_id and not vin:
            self.problem(line, "vehicle_id", "empty (give vehicle_id or vin)")
            return None
        by_vin = self.by_vin.get(vin.upper()) if vin else None
        if vin and by_vin is None:
            self.problem(line, "vin", f"{vin!r} is not in the fleet register (vehicles.vin)")
        if vehicle_id and vehicle_id not in self.register:
            self.problem(line, "vehicle_id", f"{vehicle_id!r} is not in the fleet register")
            return None
        if vehicle_id and by_vin is not None and by_vin != vehicle_id:
            self.problem(line, "vin", f"{vin!r} is registered to {by_vin}, not {vehicle_id}")
            return None
        return vehicle_id or by_vin

    def _timestamp(self, line: int, text: str) -> dt.datetime | None:
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.problem(line, "opened_at", f"{text!r} is not an ISO 8601 date or date-time")
            return None
        if len(text) == 10:  # a bare date: the start of that UTC day
            value = value.replace(tzinfo=dt.UTC)
        if value.tzinfo is None:
            self.problem(line, "opened_at", f"{text!r} has no UTC offset (add Z or +HH:MM)")
            return None
        value = value.astimezone(dt.UTC)
        if value > self.now + _FUTURE_SLACK:
            self.problem(line, "opened_at", f"{text!r} is in the future")
            return None
        return value

    def _odometer(self, line: int, text: str) -> float | None:
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            self.problem(line, "odometer_km", f"{text!r} is not a distance in km (0 or more)")
            return None
        return value

"""The five master-data files as a dealer management system (DMS) exports them, and the
regions' temperature outlook.

Each :class:`FileSpec` names its columns, the table it fills, its key and how each value is
read. A column's reader turns the cell's text into the stored value or raises ``ValueError``
with what is wrong; an empty cell is None, refused where the column is required. The readers
know nothing of other rows or files: :mod:`pipeline.fleet.validation` checks keys and
references across them.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from edge.wire import ContractError, contract

Reader = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Column:
    """One CSV column: its name (also the table's column), its reader, whether it may be
    empty."""

    name: str
    read: Reader
    required: bool = True


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One file: the option that names it, the table it fills and the table's key."""

    kind: str
    table: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The column names, in the documented order."""
        return tuple(c.name for c in self.columns)


def _text(value: str) -> str:
    return value


def _identifier(value: str) -> str:
    if any(ch.isspace() for ch in value) or len(value) > 128:
        raise ValueError(f"{value!r} is not an id (no spaces, at most 128 characters)")
    return value


def _vehicle_id(value: str) -> str:
    try:
        contract.telemetry_topic(value)  # the id must fit in a topic level
    except ContractError as exc:
        raise ValueError(str(exc)) from exc
    return value


def _vin(value: str) -> str:
    return value.upper()  # checked with the row's region, see validation


def _whole(low: int, high: int | None = None) -> Reader:
    def read(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a whole number") from None
        if number < low or (high is not None and number > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{number} is out of range (give a number {bound})")
        return number
    return read


def _amount(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number (use a dot as decimal separator)"
                         ) from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{value!r} must be zero or a positive number")
    return number


def _temperature(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number (degrees Celsius, a dot as decimal "
                         "separator)") from None
    if not -90.0 <= number <= 60.0:
        raise ValueError(f"{value!r} is not an air temperature (from -90 to 60 °C)")
    return number


def _model_year(value: str) -> int:
    return _whole(1950, dt.date.today().year + 2)(value)


def _day(value: str) -> dt.date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError(f"{value!r} is not a day as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a calendar day") from None


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"{value!r} is not true or false")
    return lowered == "true"


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
    return value


_EMAIL: Final = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_PHONE: Final = re.compile(r"\+?[0-9 ()./-]{6,32}")
_LANGUAGE: Final = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")


def _pattern(pattern: re.Pattern[str], what: str) -> Reader:
    def read(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value
    return read


VEHICLES: Final = FileSpec("vehicles", "vehicles", ("vehicle_id",), (
    Column("vehicle_id", _vehicle_id), Column("vin", _vin), Column("model", _text),
    Column("model_year", _model_year), Column("region", _text),
    Column("centre_id", _identifier, required=False),
    Column("customer_id", _identifier, required=False)))
CUSTOMERS: Final = FileSpec("customers", "customers", ("customer_id",), (
    Column("customer_id", _identifier), Column("name", _text),
    Column("phone", _pattern(_PHONE, "a phone number (6 to 32 of: digits, spaces, + ( ) . / -)"),
           required=False),
    Column("email", _pattern(_EMAIL, "an e-mail address"), required=False),
    Column("language", _pattern(_LANGUAGE, "a language tag such as de or en-GB"),
           required=False),
    Column("contact_consent", _boolean)))
CENTRES: Final = FileSpec("centres", "service_centres", ("centre_id",), (
    Column("centre_id", _identifier), Column("name", _text), Column("region", _text),
    Column("timezone", _timezone), Column("bays", _whole(1))))
CAPACITY: Final = FileSpec("capacity", "centre_capacity", ("centre_id", "day"), (
    Column("centre_id", _identifier), Column("day", _day), Column("free_slots", _whole(0)),
    Column("technician_hours", _amount)))
CATALOGUE: Final = FileSpec("catalogue", "service_catalogue", ("component",), (
    Column("component", _identifier), Column("operation_code", _identifier),
    Column("work", _text), Column("parts_eur", _amount), Column("labour_hours", _amount),
    Column("labour_rate_eur", _amount), Column("warranty_months", _whole(0))))
FORECASTS: Final = FileSpec("region_forecasts", "region_forecasts", ("region", "day"), (
    Column("region", _identifier), Column("day", _day), Column("min_temp_c", _temperature)))
"""The regions' temperature outlook (a weather service's, or the simulator's): the lowest
temperature forecast per region and day, which the winter campaign and the 12 V battery's
no-start risk read."""
SPECS: Final = (CENTRES, CUSTOMERS, CATALOGUE, VEHICLES, CAPACITY, FORECASTS)
"""Every file, in the order they are checked and applied (referenced tables first)."""
SPEC_BY_KIND: Final = {s.kind: s for s in SPECS}

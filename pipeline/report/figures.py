"""Everything the report shows, computed once: the HTML page and ``--json`` print the same."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

import duckdb

from pipeline.report.calls import CallList, call_list
from pipeline.report.kpis import (
    SMALL_N,
    CentreKpis,
    FleetSize,
    Hotspot,
    centre_kpis,
    fleet_size,
    hotspots,
)
from pipeline.report.period import Period


@dataclass(frozen=True, slots=True)
class ManagerReport:
    """The period, the fleet it covers, the KPIs per centre, the hot spots and today's calls."""

    period: Period
    fleet: FleetSize
    centres: tuple[CentreKpis, ...]
    hotspots: tuple[Hotspot, ...]
    calls: CallList
    small_n: int = SMALL_N


def build_report(con: duckdb.DuckDBPyConnection, period: Period) -> ManagerReport:
    """Read every figure for ``period`` from the store (read-only)."""
    return ManagerReport(period, fleet_size(con), tuple(centre_kpis(con, period)),
                         tuple(hotspots(con, period)), call_list(con, period))


_DERIVED = ("percent", "small", "days", "as_of")


def as_data(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses become dicts with their derived figures
    (a share's percent, every "small n" flag, the period's length), times ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: as_data(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for name in _DERIVED:
            if isinstance(getattr(type(value), name, None), property):
                out[name] = as_data(getattr(value, name))
        return out
    if isinstance(value, tuple | list):
        return [as_data(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value

"""The manager's report (``fleetcare report``): service KPIs per centre, today's call list,
failure hot spots, as an HTML page with charts or as JSON.

``period`` resolves the days covered, ``kpis`` and ``calls`` compute from the store,
``figures`` gathers them, ``html`` and ``charts`` present them, ``writer`` writes the folder.
"""

from pipeline.report.calls import Call, CallList, call_list
from pipeline.report.figures import ManagerReport, as_data, build_report
from pipeline.report.kpis import SMALL_N, CentreKpis, FleetSize, Hotspot, Median, Share
from pipeline.report.period import DEFAULT_DAYS, Period, resolve_period
from pipeline.report.writer import WrittenReport, write_report

__all__ = [
    "DEFAULT_DAYS",
    "SMALL_N",
    "Call",
    "CallList",
    "CentreKpis",
    "FleetSize",
    "Hotspot",
    "ManagerReport",
    "Median",
    "Period",
    "Share",
    "WrittenReport",
    "as_data",
    "build_report",
    "call_list",
    "resolve_period",
    "write_report",
]

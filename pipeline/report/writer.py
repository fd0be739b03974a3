"""Writing the report folder: ``report.html`` and the PNG charts it shows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipeline.report.charts import Bar, bar_chart
from pipeline.report.figures import ManagerReport, build_report
from pipeline.report.html import render
from pipeline.report.kpis import component_name
from pipeline.report.period import Period, resolve_period

PAGE = "report.html"


@dataclass(frozen=True, slots=True)
class WrittenReport:
    """Where the page went, the figures on it, and the charts drawn (None: no data)."""

    html_path: Path
    report: ManagerReport
    charts: dict[str, Path | None]


def write_report(con: duckdb.DuckDBPyConnection, out_dir: str | Path,
                 period: Period | None = None) -> WrittenReport:
    """Compute the figures for ``period`` (default: the last 30 days), draw the charts that
    have data, and write ``out_dir/report.html``. The page is written last and replaced whole,
    so a reader never sees half a report."""
    report = build_report(con, period or resolve_period())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    charts = {"response": _response_chart(report, out / "response_times.png"),
              "hotspots": _hotspot_chart(report, out / "hotspots.png")}
    page = render(report, {k: v.name if v else None for k, v in charts.items()})
    path = out / PAGE
    partial = path.with_name(f".{PAGE}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(path)
    return WrittenReport(path, report, charts)


def _response_chart(report: ManagerReport, path: Path) -> Path | None:
    bars = [Bar(f"{c.centre} (n={c.first_response_hours.n})", c.first_response_hours.value,
                c.first_response_hours.small)
            for c in report.centres
            if c.centre_id is not None and c.first_response_hours.value is not None]
    return bar_chart(bars, path, "First response per centre, median hours", "hours")


def _hotspot_chart(report: ManagerReport, path: Path) -> Path | None:
    bars = [Bar(f"{h.model} / {component_name(h.component)} (n={h.vehicles})",
                h.per_100_vehicles, h.small) for h in report.hotspots]
    return bar_chart(bars, path, "Vehicles with a lead per 100 vehicles of the model",
                     "per 100 vehicles")

"""``fleetcare report``: where the fleet fails and how fast centres answer, as HTML with PNGs.

Two questions a fleet or after-sales manager asks every month:

* **Failure hot spots**: per vehicle model and component, how many vehicles got a lead, how
  many were critical, how many the centre confirmed (``done``) or dismissed, per 100 vehicles
  of that model, so a small model with many failures stands out.
* **Response times**: per service centre, hours from the CRM accepting a lead (first 2xx) to
  the centre's first action on it (acknowledged, booked or done), median and 90th percentile,
  and how many leads still wait for an answer.

The report is a directory: ``report.html`` with both tables and two PNG charts beside it.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import duckdb
import polars as pl
from matplotlib.figure import Figure

_HOTSPOTS_SQL: Final = """
WITH fleet AS (SELECT coalesce(model, 'unknown') AS model, count(*) AS vehicles
               FROM vehicles GROUP BY 1)
SELECT coalesce(v.model, 'unknown') AS model, l.component,
       count(DISTINCT l.vehicle_id) AS vehicles_with_lead,
       count(*) FILTER (WHERE l.severity = 'critical') AS critical,
       count(*) FILTER (WHERE l.state = 'done') AS confirmed,
       count(*) FILTER (WHERE l.state = 'dismissed') AS dismissed,
       round(100.0 * count(DISTINCT l.vehicle_id) / any_value(f.vehicles), 1)
         AS per_100_vehicles
FROM leads l JOIN vehicles v USING (vehicle_id) JOIN fleet f ON f.model = coalesce(v.model,
  'unknown')
GROUP BY ALL ORDER BY per_100_vehicles DESC, model, component
"""

_RESPONSE_SQL: Final = """
WITH sent AS (SELECT lead_id, min(delivered_at) AS sent_at FROM outbox
              WHERE status = 'delivered' GROUP BY 1),
     answered AS (SELECT lead_id, min(event_at) AS answered_at FROM lead_events
                  WHERE outcome = 'applied' GROUP BY 1),
     joined AS (
       SELECT coalesce(l.document->>'$.centre.centre_id', 'none') AS centre_id,
              epoch(a.answered_at - s.sent_at) / 3600.0 AS hours
       FROM leads l JOIN sent s USING (lead_id) LEFT JOIN answered a USING (lead_id))
SELECT centre_id, count(*) AS leads_sent, count(hours) AS answered,
       count(*) - count(hours) AS waiting,
       round(median(hours), 1) AS median_hours,
       round(quantile_cont(hours, 0.9), 1) AS p90_hours
FROM joined GROUP BY 1 ORDER BY 1
"""


@dataclass(frozen=True, slots=True)
class FleetReport:
    """Where the report was written and the two tables it shows."""

    html_path: Path
    hotspots: pl.DataFrame
    response_times: pl.DataFrame


def write_report(con: duckdb.DuckDBPyConnection, out_dir: str | Path) -> FleetReport:
    """Compute both tables, draw both charts, write ``out_dir/report.html``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hotspots = _frame(con, _HOTSPOTS_SQL)
    responses = _frame(con, _RESPONSE_SQL)
    _bar_chart(hotspots, out / "hotspots.png", "per_100_vehicles",
               lambda r: f"{r['model']} / {r['component']}",
               "vehicles with a lead per 100 vehicles of the model")
    _bar_chart(responses, out / "response_times.png", "median_hours",
               lambda r: str(r["centre_id"]), "median hours from lead sent to first action")
    page = _page(hotspots, responses)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return FleetReport(path, hotspots, responses)


def _frame(con: duckdb.DuckDBPyConnection, sql: str) -> pl.DataFrame:
    rel = con.sql(sql)
    return rel.pl() if rel is not None else pl.DataFrame()


def _bar_chart(frame: pl.DataFrame, path: Path, column: str,
               label: Callable[[dict[str, Any]], str], title: str) -> None:
    """A horizontal bar chart of ``column``; an explicit "no data" chart when empty.

    Uses matplotlib's object API (no pyplot): no global figure state, safe in any thread.
    """
    rows = [] if frame.is_empty() else [
        r for r in frame.iter_rows(named=True) if r[column] is not None]
    fig = Figure(figsize=(7, 0.5 * max(len(rows), 2) + 1.2))
    ax = fig.subplots()
    if rows:
        ax.barh([label(r) for r in rows], [float(r[column]) for r in rows], color="#3b6ea5")
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center")
        ax.set_axis_off()
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)


def _table(frame: pl.DataFrame) -> str:
    if frame.is_empty():
        return "<p>No data yet.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        + "</tr>" for row in frame.iter_rows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(hotspots: pl.DataFrame, responses: pl.DataFrame) -> str:
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>fleetcare report</title>"
        f"<style>{style}</style></head><body><h1>fleetcare fleet report</h1>"
        f"<h2>Failure hot spots per model and component</h2>{_table(hotspots)}"
        f"<img src='hotspots.png' alt='failure hot spots'>"
        f"<h2>Lead response times per service centre</h2>{_table(responses)}"
        f"<img src='response_times.png' alt='response times'></body></html>")

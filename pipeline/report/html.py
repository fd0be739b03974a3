"""The report as one HTML page a manager can read: plain words, names, every n in sight.

Column headers are sentences, centres appear by name, and every share is printed with the
count it rests on ("67 % (2 of 3)"). A figure from fewer than :data:`~pipeline.report.kpis.SMALL_N`
cases carries a visible "small n" mark; a chart with nothing to show is a sentence instead.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from itertools import groupby

from pipeline.report.calls import Call
from pipeline.report.figures import ManagerReport
from pipeline.report.kpis import CentreKpis, Hotspot, Median, Share, component_name

_STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:80em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1.5em}"
    "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
    "th{background:#f2f4f7;text-align:left}td.num{text-align:right}"
    "tr.total td{font-weight:bold}.small{color:#a15c00;font-size:85%}"
    "p.no-data{font-style:italic;color:#555}figure{margin:1em 0}")
SMALL_MARK = "<span class='small'>small n</span>"

CENTRE_COLUMNS = (
    "Service centre", "Customers", "Leads sent to the CRM (n)",
    "First response, median hours", "Leads still waiting for a response",
    "Booked within 3 days", "Follow-up task in the CRM within 24 h of falling due",
    "Customers with an open advisory and no visit in 90 days (reminded)",
    "Critical faults", "Critical: median minutes to the CRM",
    "Critical: answered within 30 minutes")
HOTSPOT_COLUMNS = (
    "Vehicle model", "Component", "Vehicles of the model (n)", "Vehicles with a lead",
    "Per 100 vehicles", "Critical", "Confirmed by the centre", "Dismissed by the centre")
CALL_COLUMNS = ("Customer", "Phone", "Vehicle", "What", "When")


def share_text(share: Share) -> str:
    """``67 % (2 of 3)``, with the small-n mark; ``no case yet`` when n is 0."""
    if share.percent is None:
        return "no case yet (n = 0)"
    text = f"{share.percent} % ({share.hits} of {share.n})"
    return f"{text} {SMALL_MARK}" if share.small else text


def median_text(median: Median, unit: str) -> str:
    """``6.0 h (n = 2)``, with the small-n mark; ``none yet`` when n is 0."""
    if median.value is None:
        return "none yet (n = 0)"
    text = f"{median.value:g} {unit} (n = {median.n})"
    return f"{text} {SMALL_MARK}" if median.small else text


def render(report: ManagerReport, charts: dict[str, str | None]) -> str:
    """The whole page; ``charts`` maps a chart's name to its PNG file name or None."""
    p, f = report.period, report.fleet
    head = (f"<h1>Fleet report: {p.since} to {p.until} ({p.days} days)</h1>"
            f"<p id='fleet'>Fleet: {f.vehicles} vehicles, {f.customers} customers,"
            f" {f.centres} service centres. Events counted up to"
            f" {p.as_of:%Y-%m-%d %H:%M} UTC. Call list for {p.today}.</p>"
            f"<p>A figure from fewer than {report.small_n} cases is marked {SMALL_MARK}:"
            " too few to compare centres or to act on alone.</p>")
    body = (
        "<h2>Whom to call today</h2>" + _calls(report.calls.calls, report.calls.held_left_out)
        + "<h2>Service response per centre</h2>" + _centres(report.centres)
        + _figure("response", charts.get("response"), "median hours to the first response",
                  "No centre has answered a lead sent in this period yet, so there are no"
                  " response times to chart.")
        + "<h2>Where the fleet fails: leads per model and component</h2>"
        + _hotspots(report.hotspots)
        + _figure("hotspots", charts.get("hotspots"), "vehicles with a lead per 100 vehicles",
                  "No lead was issued in this period, so there are no failure hot spots to"
                  " chart."))
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>Fleet report {p.since} to {p.until}</title><style>{_STYLE}</style>"
            f"</head><body>{head}{body}</body></html>")


def _table(columns: Sequence[str], rows: Iterable[str], css: str) -> str:
    heads = "".join(f"<th scope='col'>{html.escape(c)}</th>" for c in columns)
    return f"<table class='{css}'><thead><tr>{heads}</tr></thead><tbody>{''.join(rows)}" \
           "</tbody></table>"


def _cells(values: Iterable[str], css: str = "", numbers_from: int | None = None) -> str:
    """One row; cells from index ``numbers_from`` on are figures, aligned right."""
    cls = f" class='{css}'" if css else ""
    return f"<tr{cls}>" + "".join(
        f"<td class='num'>{v}</td>" if numbers_from is not None and i >= numbers_from
        else f"<td>{v}</td>" for i, v in enumerate(values)) + "</tr>"


def _centres(centres: Sequence[CentreKpis]) -> str:
    def row(c: CentreKpis) -> str:
        n = f"{c.leads_sent} {SMALL_MARK}" if c.small else str(c.leads_sent)
        css = " ".join(x for x in ("total" if c.centre_id is None else "",
                                   "small-n" if c.small else "") if x)
        return _cells([
            html.escape(c.centre), str(c.customers), n,
            median_text(c.first_response_hours, "h"), str(c.waiting_for_response),
            share_text(c.booked_within_3_days), share_text(c.follow_ups_on_time),
            f"{c.dormant_customers} ({c.dormant_reminded} reminded)",
            str(c.critical_faults) + (f", {c.critical_not_in_crm} not in the CRM yet"
                                      if c.critical_not_in_crm else ""),
            median_text(c.critical_minutes_to_crm, "min"),
            share_text(c.critical_answered_within_30_min)], css, numbers_from=1)

    return _table(CENTRE_COLUMNS, (row(c) for c in centres), "centres")


def _hotspots(spots: Sequence[Hotspot]) -> str:
    if not spots:
        return ""  # the chart's place says so in words

    def row(h: Hotspot) -> str:
        n = f"{h.vehicles} {SMALL_MARK}" if h.small else str(h.vehicles)
        return _cells([html.escape(h.model), html.escape(component_name(h.component)), n,
                       str(h.vehicles_with_lead), f"{h.per_100_vehicles:g}", str(h.critical),
                       str(h.confirmed), str(h.dismissed)], "small-n" if h.small else "",
                      numbers_from=2)

    return _table(HOTSPOT_COLUMNS, (row(h) for h in spots), "hotspots")


def _calls(calls: Sequence[Call], held: int) -> str:
    left_out = (f"<p>{held} call(s) left out: the vehicle's leads are held (no customer on"
                " record, no consent to contact, or another car's VIN).</p>") if held else ""
    if not calls:
        return f"<p class='no-data' id='no-calls'>No calls are due today.</p>{left_out}"
    parts = []
    for centre, group in groupby(calls, key=lambda c: c.centre):
        items = list(group)
        parts.append(f"<h3>{html.escape(centre)}: {len(items)} call(s)</h3>" + _table(
            CALL_COLUMNS, (_cells([html.escape(c.customer), html.escape(c.phone or "none"),
                                   html.escape(c.vehicle), html.escape(c.what),
                                   html.escape(c.when)]) for c in items), "calls"))
    return "".join(parts) + left_out


def _figure(name: str, png: str | None, alt: str, no_data: str) -> str:
    inner = (f"<img src='{html.escape(png)}' alt='{html.escape(alt)}'>" if png
             else f"<p class='no-data'>{html.escape(no_data)}</p>")
    return f"<figure id='chart-{name}'>{inner}</figure>"

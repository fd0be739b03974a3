"""The console's HTML pages: index, lead, vehicle, not found, store busy.

Every piece of text from the store is escaped here (customer and centre names come from
imported files, fault-code descriptions from vehicles); pages carry their own style and
charts, and fetch nothing else, not even a favicon.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any, Final
from urllib.parse import quote

from pipeline.console import charts, words
from pipeline.console.evidence import LeadRow, VehicleHistory
from pipeline.features.daily import PAD_WEAR_LIMIT
from pipeline.leads.holds import explain

_STYLE: Final = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:60rem;padding:0 1rem;
color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse}td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;
text-align:left;vertical-align:top}
.chart{margin:1rem 0}.chart svg{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-weight:600;margin-bottom:.3rem}.no-data{color:#666;font-style:italic}
.legend{list-style:none;padding:0;display:flex;gap:1rem;font-size:.85rem}
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem}
.headline{font-size:1.1rem}nav{margin-bottom:1rem}
"""
_WHEELS: Final = {"fl": "front left", "fr": "front right", "rl": "rear left",
                  "rr": "rear right"}


def layout(title: str, body: str, root: str = "/") -> str:
    """A whole page around ``body`` (``title`` is escaped here, ``body`` must be already).

    ``root`` is how this page reaches the console's root: ``"/"``, or relative (``"../"``)
    so that the links still work when a proxy serves the console under a path prefix."""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(title)} · fleetcare console</title>"
            '<link rel="icon" href="data:,">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{_STYLE}</style></head><body>"
            f'<nav><a href="{escape(root)}">All recent leads</a></nav>'
            f"{body}</body></html>")


def lead_href(lead_id: str, root: str = "/") -> str:
    """The path of a lead's page (what the lead's ``evidence_url`` ends with)."""
    return f"{root}leads/{quote(lead_id, safe='')}"


def vehicle_href(vehicle_id: str, root: str = "/") -> str:
    """The path of a vehicle's page."""
    return f"{root}vehicles/{quote(vehicle_id, safe='')}"


def _link(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def _list(items: Sequence[str], empty: str) -> str:
    if not items:
        return f'<p class="no-data">{escape(empty)}</p>'
    return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"


def _rows(pairs: Sequence[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
                               for k, v in pairs) + "</table>"


def _leads_table(leads: Sequence[LeadRow], root: str, *, with_vehicle: bool = True) -> str:
    if not leads:
        return '<p class="no-data">No leads in this store yet.</p>'
    head = ("<tr><th>Lead</th>" + ("<th>Vehicle</th>" if with_vehicle else "")
            + "<th>Part</th><th>Severity</th><th>State</th><th>Raised</th></tr>")
    body = "".join(
        f"<tr><td>{_link(lead_href(r.lead_id, root), r.lead_id)}</td>"
        + (f"<td>{_link(vehicle_href(r.vehicle_id, root), r.vehicle_id)}</td>" if with_vehicle
           else "")
        + f"<td>{escape(words.component(r.component))}</td><td>{escape(r.severity)}</td>"
          f"<td>{escape(r.state)}</td><td>{escape(f'{r.created_at:%Y-%m-%d %H:%M}')}</td></tr>"
        for r in leads)
    return f'<table class="leads">{head}{body}</table>'


def index_page(leads: Sequence[LeadRow], root: str = "/") -> str:
    """The newest leads, each linked to its page and its vehicle's."""
    return layout("Recent leads", f"<h1>Recent leads</h1>{_leads_table(leads, root)}", root)


def trend_charts(history: VehicleHistory) -> str:
    """The four evidence charts of a vehicle: battery health, pad wear per wheel, cranking
    dips against air temperature, and the fault-code timeline."""
    soh = charts.line_chart(
        "soh", "High-voltage battery state of health", "%",
        [charts.Line("state of health", history.values("soh"))],
        empty="No high-voltage battery health reported (not an electric vehicle, or no data "
              "in this period).")
    pads = charts.line_chart(
        "pad_wear", "Brake pad wear per wheel", "%",
        [charts.Line(words_, history.values(f"pad_wear_{k}")) for k, words_ in _WHEELS.items()],
        empty="No brake pad wear reported in this period.",
        limit=(PAD_WEAR_LIMIT, f"wear limit {PAD_WEAR_LIMIT:.0f} %"))
    air = dict(history.values("ambient_temp"))
    dips = [(air[day], volts, f"{day}: {volts:.2f} V at {air[day]:.0f} °C")
            for day, volts in history.values("crank_dip_min") if day in air]
    crank = charts.scatter_chart(
        "cranking", "12 V cranking dips against air temperature",
        "outside air temperature", "°C", "V", dips,
        empty="No engine starts with both a cranking voltage and an air temperature in "
              "this period.")
    marks = [charts.Mark(e.ts, e.code, f"{e.ts:%Y-%m-%d %H:%M} {e.code} "
                         f"{'cleared' if e.cleared else e.status}"
                         f"{': ' + e.description if e.description else ''}", not e.cleared)
             for e in history.fault_codes]
    timeline = charts.timeline_chart(
        "fault_codes", "Fault-code timeline", marks,
        empty="No fault codes reported in this period.")
    return f'<section class="charts">{soh}{pads}{crank}{timeline}</section>'


def _customer(document: dict[str, Any]) -> str:
    customer = document.get("customer")
    if not isinstance(customer, dict):
        return "not on record"
    contact = ", ".join(str(customer[k]) for k in ("phone", "email") if customer.get(k))
    return f"{customer.get('name', '')}" + (f" ({contact})" if contact else "")


def _centre(document: dict[str, Any]) -> str:
    centre = document.get("centre")
    return str(centre.get("name") or centre.get("centre_id")) if isinstance(centre, dict) \
        else "none assigned"


def _work(document: dict[str, Any]) -> str:
    work = document.get("recommended_work")
    if not isinstance(work, dict):
        return "not in the catalogue"
    total = work.get("total_eur")
    return f"{work.get('description', '')}" + (f", about {total} EUR" if total else "")


def lead_page(lead: LeadRow, history: VehicleHistory | None, root: str = "/") -> str:
    """One lead: what to do and why, the model's reasons, the slot, then the trends."""
    doc = lead.document
    vehicle = doc.get("vehicle") if isinstance(doc.get("vehicle"), dict) else {}
    facts = [("Vehicle", f"{lead.vehicle_id} ({(vehicle or {}).get('model') or 'model unknown'})"),
             ("Customer", _customer(doc)), ("Service centre", _centre(doc)),
             ("Part", words.component(lead.component)), ("Severity", lead.severity),
             ("State", lead.state if lead.hold_reason is None else
              f"{lead.state}: {explain(lead.hold_reason)}"),
             ("Confidence", words.confidence(doc)),
             ("Proposed slot", words.slot(doc)), ("Recommended work", _work(doc)),
             ("Raised", f"{lead.created_at:%Y-%m-%d %H:%M %Z}".strip())]
    body = (f'<h1>Lead {escape(lead.lead_id)}</h1>'
            f'<p class="headline">{escape(words.headline(doc))}</p>'
            f'{_rows(facts)}'
            f'<p>{_link(vehicle_href(lead.vehicle_id, root), "Everything about this vehicle")}</p>'
            '<h2>Why the model raised it</h2>'
            f'<section class="reasons">{_list(words.reasons(doc), "No model reasons: this lead rests on fault codes or a campaign.")}</section>'  # noqa: E501
            '<h2>What the vehicle reported</h2>'
            f'{_list(words.evidence_lines(doc), "No readings quoted.")}'
            f'{_list(words.fault_code_lines(doc), "No fault codes quoted.")}'
            '<h2>Trends</h2>'
            + (trend_charts(history) if history is not None else
               '<p class="no-data">The store holds no history for this vehicle.</p>'))
    return layout(f"Lead {lead.lead_id}", body, root)


def vehicle_page(history: VehicleHistory, leads: Sequence[LeadRow], root: str = "/") -> str:
    """One vehicle: its trends, and every lead raised about it."""
    facts = [("Model", history.model or "unknown"), ("Region", history.region or "unknown")]
    body = (f"<h1>Vehicle {escape(history.vehicle_id)}</h1>{_rows(facts)}"
            f"<h2>Trends</h2>{trend_charts(history)}"
            f"<h2>Leads</h2>{_leads_table(leads, root, with_vehicle=False)}")
    return layout(f"Vehicle {history.vehicle_id}", body, root)


def not_found_page(what: str, root: str = "/") -> str:
    """The 404 page: which lead or vehicle the store does not know."""
    return layout("Not found", f"<h1>Not found</h1><p>{escape(what)}</p>", root)


def busy_page(reason: str, root: str = "/") -> str:
    """The 503 page: the store could not be opened for reading just now."""
    return layout("Store busy", "<h1>The store cannot be read right now</h1>"
                  f"<p>{escape(reason)}</p><p>Reload the page in a moment.</p>", root)

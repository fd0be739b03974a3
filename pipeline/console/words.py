"""A lead's content in sentences a service advisor can read out: reasons, evidence, the slot.

Leads written since the lead document carries its own words (``headline``, evidence items and
factors with a ``text``) are shown in those words. Older leads in the same store carry bare
feature names and numbers; for them the sentences are made here with the lead document's own
wording (:mod:`pipeline.leads.wording`), so no page ever shows a raw contribution without
words and both kinds of lead read alike.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pipeline.leads import wording

component = wording.component_words
"""``lv_battery`` as people say it (the leads' words)."""


def reason(factor: Any) -> str:
    """One of the model's top factors as a sentence, e.g. ``front-left pad wear 91 % raises
    the risk``: the lead's own words, else the lead document's wording of the bare factor."""
    if isinstance(factor, dict) and factor.get("text"):
        return str(factor["text"])
    return str(wording.explain_factor(factor)["text"])


def reasons(document: dict[str, Any]) -> list[str]:
    """Why the model raised the lead, strongest first (empty for a lead not from a model)."""
    factors = (document.get("evidence") or {}).get("top_factors") or []
    return [reason(factor) for factor in factors]


def evidence_lines(document: dict[str, Any]) -> list[str]:
    """The readings the lead quotes, one sentence each."""
    signals = (document.get("evidence") or {}).get("signals") or []
    if isinstance(signals, dict):  # older documents: {name: value}, placeholders included
        return [f"{wording.quantity(name).meaning}: "
                f"{wording.with_unit(float(value), wording.quantity(name).unit)}"
                for name, value in sorted(signals.items())
                if isinstance(value, int | float) and wording.is_fact(name, float(value))]
    return [str(item.get("text") or f"{item.get('signal')}: {item.get('value')}")
            for item in signals if isinstance(item, dict)]


def fault_code_lines(document: dict[str, Any]) -> list[str]:
    """The fault codes the lead quotes, with their meaning and when they were last seen."""
    out = []
    for code in (document.get("evidence") or {}).get("fault_codes") or []:
        if not isinstance(code, dict):
            out.append(str(code))
            continue
        described = f" ({code['description']})" if code.get("description") else ""
        seen = f", last seen {code['last_seen']}" if code.get("last_seen") else ""
        out.append(f"{code.get('code')}{described}: {code.get('severity', '')}{seen}".strip())
    return out


def confidence(document: dict[str, Any]) -> str:
    """How sure the lead is, in words."""
    stated = document.get("confidence")
    if isinstance(stated, dict) and stated.get("text"):
        return str(stated["text"])
    probability = document.get("probability")
    if isinstance(probability, int | float):
        return (f"{wording.percent(probability)} % chance of a failure within "
                f"{document.get('horizon_days', '?')} days")
    return "raised by the vehicle's own fault codes, not by a model"


def headline(document: dict[str, Any]) -> str:
    """The lead's one sentence: what to do and why."""
    if document.get("headline"):
        return str(document["headline"])
    what = component(str(document.get("component", "")))
    return f"{str(document.get('severity', '')).capitalize()} risk for the {what}: book a check"


def slot(document: dict[str, Any]) -> str:
    """The proposed appointment in words, or why there is none."""
    proposed = document.get("proposed_appointment")
    if not isinstance(proposed, dict):
        if document.get("roadside_assistance"):
            return "none: the fault is critical, send roadside assistance instead"
        return "none proposed (no free slot within the horizon, or the lead is held)"
    if proposed.get("text"):
        return str(proposed["text"])
    start, end = proposed.get("window_start"), proposed.get("window_end")
    try:
        begins = dt.datetime.fromisoformat(str(start))
        ends = dt.datetime.fromisoformat(str(end))
    except ValueError:
        return f"{proposed.get('day', '')} at {proposed.get('centre_id', '')}".strip()
    return f"{begins:%a %d %b %Y}, {begins:%H:%M}–{ends:%H:%M} (UTC)"

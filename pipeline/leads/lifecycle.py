"""A lead's life after it is sent: the CRM's status updates applied to the store, once each.

States: ``new`` (issued) → ``sent`` (the CRM said 2xx) → ``acknowledged`` → ``booked`` →
``done`` or ``dismissed``. The CRM may skip steps (book without acknowledging first) and may
act before our delivery bookkeeping committed, so every non-final state can move forward to
any later one; nothing moves backwards or out of ``done``/``dismissed``. Every update is kept
in ``lead_events`` with what became of it (``applied``, ``stale`` for a repeat of the current
state, ``rejected`` with the reason), so a refused update is visible, never silently lost.

Closed leads are labels for retraining: ``done`` (the centre found and fixed the fault) and
``dismissed`` (with the advisor's reason) land in ``lead_outcomes``. A ``done`` lead also
records the visit (``service_visits``, which the 90-day reminder reads) and a follow-up task
due 24 hours after it (``follow_ups``, sent by :func:`pipeline.leads.campaigns.send_follow_ups`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb

from pipeline.crm.inbound import Inbox, StatusUpdate
from pipeline.store.connection import transaction

log = logging.getLogger(__name__)

ORDER: Final = ("new", "sent", "acknowledged", "booked", "done", "dismissed")
FINAL: Final = frozenset({"done", "dismissed"})
FOLLOW_UP_AFTER: Final = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class InboundReport:
    """What one :func:`apply_inbound` run did with the inbox."""

    applied: int = 0
    already_seen: int = 0
    stale: int = 0
    rejected: int = 0
    unreadable: int = 0


def transition_problem(current: str, target: str) -> str | None:
    """Why ``current`` → ``target`` is not allowed, or None when it is."""
    if current in FINAL:
        return f"lead is already {current}; a closed lead does not change"
    if target not in ORDER[2:]:
        return f"unknown target state {target!r}"
    if ORDER.index(target) < ORDER.index(current):
        return f"cannot go back from {current} to {target}"
    return None


def apply_inbound(con: duckdb.DuckDBPyConnection, inbox: Inbox | str | Path, *,
                  now: dt.datetime | None = None) -> InboundReport:
    """Apply every update in ``inbox`` not applied before; idempotent on ``update_id``."""
    now = now or dt.datetime.now(dt.UTC)
    box = inbox if isinstance(inbox, Inbox) else Inbox(inbox)
    updates, unreadable = box.read()
    seen = {r[0] for r in con.execute("SELECT update_id FROM lead_events").fetchall()}
    tally = {"applied": 0, "already_seen": 0, "stale": 0, "rejected": 0}
    for update in updates:
        if update.update_id in seen:
            tally["already_seen"] += 1
            continue
        seen.add(update.update_id)
        tally[_apply_one(con, update, now)] += 1
    log.info("inbound status updates: %s", tally)
    return InboundReport(**tally, unreadable=unreadable)


def _apply_one(con: duckdb.DuckDBPyConnection, update: StatusUpdate, now: dt.datetime) -> str:
    row = con.execute("SELECT state, vehicle_id, component, severity, probability, document"
                      " FROM leads WHERE lead_id = ?", [update.lead_id]).fetchone()
    at = dt.datetime.fromisoformat(update.at.replace("Z", "+00:00"))
    current: str | None = row[0] if row else None
    reason: str | None
    if current is None:
        outcome, reason = "rejected", f"no lead {update.lead_id}"
    elif current == update.state:
        outcome, reason = "stale", f"lead is already {current}"
    else:
        reason = transition_problem(current, update.state)
        outcome = "rejected" if reason else "applied"
    with transaction(con):
        detail = {**update.detail, **({"reason_refused": reason} if reason else {})}
        con.execute("INSERT INTO lead_events VALUES (?, ?, ?, ?, ?, 'crm', ?, ?, ?)",
                    [update.update_id, update.lead_id, current, update.state, at, outcome,
                     json.dumps(detail), now])
        if outcome == "applied" and row is not None:
            _move(con, update, at, row)
    if outcome == "rejected":
        log.warning("status update %s refused: %s", update.update_id, reason)
    return outcome


def _move(con: duckdb.DuckDBPyConnection, update: StatusUpdate, at: dt.datetime,
          row: tuple[object, ...]) -> None:
    """Change the state and record what a closed lead teaches (labels, visit, follow-up)."""
    _, vehicle_id, component, severity, probability, document = row
    con.execute("UPDATE leads SET state = ?, updated_at = ? WHERE lead_id = ?",
                [update.state, at, update.lead_id])
    if update.state not in FINAL:
        return
    doc = json.loads(str(document))
    reason = update.detail.get("reason") or update.detail.get("work_done")
    con.execute("INSERT OR REPLACE INTO lead_outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [update.lead_id, vehicle_id, component, update.state, at, severity,
                 doc.get("probability") if probability is not None else None,
                 doc.get("model_id"), reason])
    if update.state == "done":
        centre = (doc.get("centre") or {}).get("centre_id")
        con.execute("INSERT OR IGNORE INTO service_visits VALUES (?, ?, ?, ?)",
                    [vehicle_id, at, centre, update.lead_id])
        con.execute("INSERT OR IGNORE INTO follow_ups VALUES (?, ?, 'post_visit', ?, ?, NULL)",
                    [update.lead_id, vehicle_id, at + FOLLOW_UP_AFTER, at])

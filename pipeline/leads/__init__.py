"""From scores and fault codes to leads: advice, the urgent path for critical faults, the
lead document, appointment proposals, campaigns, held leads (no customer on record, no
consent to contact, stale evidence) and the lead's life after it is sent.
"""

from pipeline.leads.advice import AdviceReport, advise
from pipeline.leads.appointments import iso
from pipeline.leads.campaigns import pre_winter_battery_check, send_follow_ups, visit_reminders
from pipeline.leads.document import LeadSettings
from pipeline.leads.holds import HELD, HOLD_RULES, HoldReason, HoldRule, hold_reasons
from pipeline.leads.lifecycle import InboundReport, apply_inbound
from pipeline.leads.urgent import UrgentLeads

__all__ = [
    "HELD",
    "HOLD_RULES",
    "AdviceReport",
    "HoldReason",
    "HoldRule",
    "InboundReport",
    "LeadSettings",
    "UrgentLeads",
    "advise",
    "apply_inbound",
    "hold_reasons",
    "iso",
    "pre_winter_battery_check",
    "send_follow_ups",
    "visit_reminders",
]

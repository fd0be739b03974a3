"""The evidence console: a read-only web page per lead and per vehicle, for service advisors.

A lead's ``evidence_url`` points here (``/leads/<lead_id>``). The page says what to do and
why in plain words, shows the proposed slot, and draws the vehicle's trends (battery health,
pad wear per wheel, cranking dips against air temperature, fault codes) as inline SVG.
``fleetcare console`` serves it; see docs/console.md.
"""

from pipeline.console.app import create_app
from pipeline.console.evidence import (
    HISTORY_DAYS,
    FaultCodeEvent,
    LeadRow,
    VehicleHistory,
    lead,
    recent_leads,
    vehicle_history,
    vehicle_leads,
)
from pipeline.console.pages import lead_href, vehicle_href
from pipeline.console.server import ConsoleServer

__all__ = [
    "HISTORY_DAYS",
    "ConsoleServer",
    "FaultCodeEvent",
    "LeadRow",
    "VehicleHistory",
    "create_app",
    "lead",
    "lead_href",
    "recent_leads",
    "vehicle_history",
    "vehicle_href",
    "vehicle_leads",
]

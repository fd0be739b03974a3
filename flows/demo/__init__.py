"""``make demo``: the whole pipeline on one machine, with the sandbox's CRM and the simulated
fleet's master data imported through ``fleetcare fleet import``.
"""

from flows.demo.maintenance import maintenance_flow
from flows.demo.options import DemoOptions
from flows.demo.run import format_report, run_demo

__all__ = [
    "DemoOptions",
    "format_report",
    "maintenance_flow",
    "run_demo",
]

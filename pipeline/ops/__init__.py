"""What operators look at: service health checks judged from the store, and the fleet report.
"""

from pipeline.ops.health import Check, HealthReport, Thresholds, check_health, record_health
from pipeline.ops.report import write_report

__all__ = [
    "Check",
    "HealthReport",
    "Thresholds",
    "check_health",
    "record_health",
    "write_report",
]

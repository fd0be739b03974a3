"""What operators look at: service health checks judged from the store (the manager's report
is :mod:`pipeline.report`)."""

from pipeline.ops.health import Check, HealthReport, Thresholds, check_health, record_health

__all__ = [
    "Check",
    "HealthReport",
    "Thresholds",
    "check_health",
    "record_health",
]

"""``fleetcare report`` lives in :mod:`pipeline.report`; operators import it from here too."""

from pipeline.report import write_report

__all__ = ["write_report"]

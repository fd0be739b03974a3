"""Stand-ins that exist only for demos and tests: the reference CRM and synthetic reference data.

Nothing scheduled or deployed imports this package (import-linter checks it).
"""

from pipeline.sandbox.reference_crm import CrmReceiver, PayloadError, serve_forever
from pipeline.sandbox.reference_data import seed_reference_data

__all__ = [
    "CrmReceiver",
    "PayloadError",
    "seed_reference_data",
    "serve_forever",
]

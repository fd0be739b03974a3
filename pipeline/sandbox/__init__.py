"""Stand-ins that exist only for demos and tests: the reference CRM.

Nothing scheduled or deployed imports this package (import-linter checks it). Master data is
not among the stand-ins: it always comes in through ``fleetcare fleet import`` (the simulator
writes its fleet's files, see :mod:`edge.sim.masterdata`).
"""

from pipeline.sandbox.reference_crm import CrmReceiver, PayloadError, serve_forever

__all__ = [
    "CrmReceiver",
    "PayloadError",
    "serve_forever",
]

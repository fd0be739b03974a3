"""Forgetting a customer in every store, export and file fleetcare writes.
"""

from pipeline.privacy.erasure import forget_everywhere
from pipeline.privacy.forget import (
    ERASED,
    ForgetError,
    StoreLockedError,
    UnknownVehicleError,
    customer_hash,
)

__all__ = [
    "ERASED",
    "ForgetError",
    "StoreLockedError",
    "UnknownVehicleError",
    "customer_hash",
    "forget_everywhere",
]

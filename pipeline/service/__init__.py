"""The workshop's repair history, imported from the dealer system, and what it teaches.

A DMS exports its repair orders as ``repair_orders.csv``; :func:`import_repair_orders` checks
the whole file first (every problem as ``file:line: column: what is wrong``, nothing applied
when there is one) and then upserts it on ``order_id`` into ``repair_orders``. Training reads
its labels from these orders and the CRM's lead outcomes (:mod:`pipeline.features.labels`),
never from the simulator's ground truth.
"""

from pipeline.service.importer import ImportSummary, import_repair_orders
from pipeline.service.orders import (
    FAILURE_KINDS,
    KINDS,
    RepairOrder,
    RepairOrderFileError,
    read_repair_orders,
)

__all__ = [
    "FAILURE_KINDS",
    "KINDS",
    "ImportSummary",
    "RepairOrder",
    "RepairOrderFileError",
    "import_repair_orders",
    "read_repair_orders",
]

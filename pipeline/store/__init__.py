"""The DuckDB store: opening it, its numbered migrations, cold exports and the serving store.

One process writes a store file; readers (the flows' serving store, exports, reports) work on
snapshots and Parquet exports so they never take the writer's lock.
"""

from pipeline.errors import StoreError
from pipeline.store.connection import (
    NewStoreGuard,
    connect,
    connect_waiting,
    no_new_store_on_failure,
    transaction,
)
from pipeline.store.export import ExportPolicy, attach_exports, export_cold, recover, write_snapshot
from pipeline.store.serving import (
    LANDING_TABLES,
    ServingStoreBusyError,
    attach_landing,
    connect_serving,
    define_landing_views,
)

__all__ = [
    "LANDING_TABLES",
    "ExportPolicy",
    "NewStoreGuard",
    "ServingStoreBusyError",
    "StoreError",
    "attach_exports",
    "attach_landing",
    "connect",
    "connect_serving",
    "connect_waiting",
    "define_landing_views",
    "export_cold",
    "no_new_store_on_failure",
    "recover",
    "transaction",
    "write_snapshot",
]

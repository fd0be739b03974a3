"""MQTT into DuckDB exactly once: the ingest session and its fast client, admission checks,
columnar decoding, bulk landing, the dead-letter table and the receipts to the vehicles.

A message is acknowledged to the broker only after its rows are committed; landing is
idempotent on the message id, so redelivery makes no duplicate. After each commit every
vehicle of the batch gets a receipt naming its messages the store now holds, on which its
agent deletes them from its spool.
"""

from pipeline.ingest.admission import (
    DEFAULT_RATE_LIMIT,
    Admission,
    FleetFileError,
    RateLimit,
    RateLimiter,
    Vehicle,
    VehicleRegister,
    read_fleet_file,
    register_vehicles,
)
from pipeline.ingest.client import BufferedSocket, IngestClient
from pipeline.ingest.columnar import invalid_messages, telemetry_columns
from pipeline.ingest.deadletters import (
    list_dead_letters,
    replay_dead_letters,
    unreplayable_letters,
)
from pipeline.ingest.landing import (
    KEPT_BYTES,
    InboundMessage,
    LandingError,
    LandResult,
    inbound,
    land,
    prepare,
)
from pipeline.ingest.receipts import Outcome, build_receipts
from pipeline.ingest.service import FLUSH_BYTES, FLUSH_ROWS, Ingestor, IngestStats, run_forever
from pipeline.ingest.stats import StatsBoard
from pipeline.ingest.writer import BatchWriter

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "FLUSH_BYTES",
    "FLUSH_ROWS",
    "KEPT_BYTES",
    "Admission",
    "BatchWriter",
    "BufferedSocket",
    "FleetFileError",
    "InboundMessage",
    "IngestClient",
    "IngestStats",
    "Ingestor",
    "LandResult",
    "LandingError",
    "Outcome",
    "RateLimit",
    "RateLimiter",
    "StatsBoard",
    "Vehicle",
    "VehicleRegister",
    "build_receipts",
    "inbound",
    "invalid_messages",
    "land",
    "list_dead_letters",
    "prepare",
    "read_fleet_file",
    "register_vehicles",
    "replay_dead_letters",
    "run_forever",
    "telemetry_columns",
    "unreplayable_letters",
]

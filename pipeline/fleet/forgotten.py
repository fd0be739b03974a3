"""Customers ``fleetcare forget`` erased, recognised again when a DMS export names them.

The erasure log keeps a salted hash of each forgotten customer id, never the id. An import
hashes the ids it reads the same way: a forgotten customer's row is skipped and a vehicle's
link to them is withheld, both counted in the import's summary, so an erasure is not undone by
the next nightly export of a DMS that still holds the customer.
"""

from __future__ import annotations

import hashlib
from typing import Final

import duckdb

_HASH_PREFIX: Final = "fleetcare-erasure:"


def customer_hash(customer_id: str) -> str:
    """The erasure log's stand-in for a customer id: whoever knows the id can confirm it was
    forgotten; the log alone does not reveal it."""
    return hashlib.sha256((_HASH_PREFIX + customer_id).encode()).hexdigest()


def forgotten_hashes(con: duckdb.DuckDBPyConnection) -> frozenset[str]:
    """The hashes of every customer the store's erasure log records as forgotten."""
    rows = con.execute("SELECT DISTINCT unnest(customer_hashes) FROM erasure_log").fetchall()
    return frozenset(str(r[0]) for r in rows)

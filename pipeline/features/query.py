"""A DuckDB query of the feature build, run and handed to polars.

The build's queries share one parameter dictionary (the time window and the chunk's vehicle
range), but DuckDB refuses a named parameter that the text does not use; so each query gets
the ones it names, and a statement that yields no relation is an error rather than None.
"""

from __future__ import annotations

import duckdb
import polars as pl

__all__ = ["frame"]


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object]) -> pl.DataFrame:
    """Run ``sql`` with those of ``params`` it names (``$name``) and return its rows (through
    Arrow)."""
    named = {k: v for k, v in params.items() if f"${k}" in sql}
    rel = con.sql(sql, params=named or None)
    if rel is None:
        raise ValueError("query returned no relation")
    return rel.pl()

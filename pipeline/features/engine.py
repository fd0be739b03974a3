"""Which polars engine runs the features' plans, and why not the streaming one.

What keeps a fleet out of memory is the chunk of vehicles (:mod:`pipeline.features.daily`):
DuckDB streams the scan and the per-day aggregates, and polars sees one chunk's per-day rows.
Inside a chunk the plans are rolling windows over the vehicle-and-day order, flags over the
previous row and as-of joins, which polars' streaming engine (the default of ``collect()``
since polars 2) runs in order-preserving steps that cost time and hold copies.

Measured on one 20,000-vehicle chunk of 14 days: the daily build took 2.7-3.4 s streaming and
1.7-2.2 s in memory, value for value the same frame (the pad-stage as-of join and its columns
alone 0.42 s against 0.04 s); labelling 10,000 vehicles' rows raised peak RSS by about 500 MB
streaming and 40 MB in memory, in 0.5-1.3 s against 0.15 s (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["POLARS_ENGINE"]

POLARS_ENGINE: Final[Literal["in-memory"]] = "in-memory"
"""The engine of every ``collect`` in the feature and label builds."""

"""The ``.over``-free per-vehicle shift and fill equal the ``.over`` forms on sorted frames."""

from __future__ import annotations

import numpy as np
import polars as pl
from polars.testing import assert_series_equal

from pipeline.features.vehicle_order import first_of_vehicle, forward_filled, previous


def _frame() -> pl.DataFrame:
    """Vehicles of one to six rows, values null a third of the time, some NaN, some vehicles
    with no value at all, sorted by vehicle and day."""
    rng = np.random.default_rng(5)
    rows = []
    for v in range(300):
        for d in range(int(rng.integers(1, 7))):
            x = None if (v % 7 == 0 or rng.uniform() < 0.33) else float(rng.normal())
            rows.append((f"v{v:03d}", d, np.nan if x is not None and rng.uniform() < 0.05 else x))
    return pl.DataFrame(rows, schema={"vehicle_id": pl.String, "day": pl.Int64,
                                      "x": pl.Float64}, orient="row").sort("vehicle_id", "day")


def test_previous_and_forward_filled_equal_their_over_forms() -> None:
    frame = _frame()
    x = pl.col("x")
    got = frame.select(previous(x).alias("p"), forward_filled(x).alias("f"),
                       previous(forward_filled(x)).alias("pf"))
    want = frame.select(x.shift(1).over("vehicle_id").alias("p"),
                        x.forward_fill().over("vehicle_id").alias("f"),
                        x.forward_fill().shift(1).over("vehicle_id").alias("pf"))
    for name in ("p", "f", "pf"):
        assert_series_equal(got[name], want[name], check_exact=True)
    assert frame.select(first_of_vehicle()).to_series().sum() == 300

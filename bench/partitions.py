"""Partitioned feature build (pipeline/ml/partitions.py) against the single-connection build.

Builds a synthetic landing store and snapshot, then times, in the same run, the serving
store's unpartitioned ``compute_daily_features`` (the reference) and the same work split in
vehicle hash buckets, run one after another and on a 2-thread pool (what a local Dask cluster
of 2 thread workers does). Prints one JSON object; medians of 3.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]  # bench/edge.py ≠ edge
sys.path.insert(0, str(_HERE.parent / "tests" / "pipeline"))

from synth_fleet import Car, build_store  # noqa: E402

from pipeline.features.materialised import DayRange, compute_daily_features  # noqa: E402
from pipeline.ml import partitions as partitioned  # noqa: E402
from pipeline.store import export  # noqa: E402
from pipeline.store.serving import connect_serving  # noqa: E402

VEHICLES, DAYS, BUCKETS = 60, 120, 4


def _median(fn: Callable[[], int]) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(3):
        started = time.perf_counter()
        rows = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cars = [Car(f"v{i:03d}", ev=i % 3 != 0) for i in range(VEHICLES)]
        land = build_store(root / "landing.duckdb", cars, DAYS)
        export.write_snapshot(land, root / "snapshot.duckdb")
        land.close()
        snap = str(root / "snapshot.duckdb")
        con = connect_serving(root / "serving.duckdb", snap)
        start = dt.date(2025, 1, 1)
        days = DayRange(start, start + dt.timedelta(days=DAYS - 1))
        parts = [p for p in partitioned.partition_vehicles(partitioned.fleet_vehicles(con),
                                                           BUCKETS) if p]
        single, rows = _median(lambda: compute_daily_features(con, days).height)

        def sequential() -> int:
            return sum(partitioned.partition_features(snap, p, days).height for p in parts)

        def threaded() -> int:
            with ThreadPoolExecutor(2) as pool:
                return sum(f.height for f in pool.map(
                    lambda p: partitioned.partition_features(snap, p, days), parts))

        seq, seq_rows = _median(sequential)
        par, par_rows = _median(threaded)
        con.close()
    assert rows == seq_rows == par_rows
    print(json.dumps({
        "vehicles": VEHICLES, "days": DAYS, "buckets": BUCKETS, "feature_rows": rows,
        "single_connection_s": round(single, 3), "partitions_sequential_s": round(seq, 3),
        "partitions_2_threads_s": round(par, 3),
        "ratio_sequential_to_single": round(single / seq, 3),
        "ratio_2_threads_to_single": round(single / par, 3),
    }))


if __name__ == "__main__":
    main()

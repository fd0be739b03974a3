"""Benchmark: reading two ingest workers' snapshots through the serving views against one.

With two ingest workers the serving store's views are the ``UNION ALL`` of both snapshots,
and the second store's rows whose ``msg_id`` the first store's ``ingested_messages`` holds are
left out (an anti-join). This measures what that costs: the same landed data, once in ONE
snapshot (the reference) and once split into TWO by message with a share of messages in both
(what an agent's re-sends dealt to the other worker leave behind), read through
:func:`pipeline.store.serving.connect_serving` with the same queries, in the same run:

* ``count``: ``count(*)`` over ``telemetry``;
* ``daily``: a per vehicle, signal and day mean over ``telemetry`` (the shape of the daily
  feature build's scan).

Both must return the same numbers (checked). Prints one JSON object with each query's median
seconds for one and two snapshots, their ratio, and the load average.

    .venv/bin/python bench/serving_union.py [--messages 100000] [--overlap 0.01] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

# bench/ holds scripts named like our packages (bench/edge.py): import the packages, not them.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from pipeline.store import connection as store  # noqa: E402
from pipeline.store import export  # noqa: E402
from pipeline.store.serving import connect_serving  # noqa: E402

SIGNALS = 100
VEHICLES = 1_000
QUERIES = {
    "count": "SELECT count(*) FROM telemetry",
    "daily": "SELECT count(*), sum(m) FROM (SELECT vehicle_id, signal, ts::DATE AS day, "
             "avg(value) AS m FROM telemetry GROUP BY ALL)",
}


def _build(path: Path, messages: int) -> None:
    """A landing store of ``messages`` telemetry messages of ``SIGNALS`` rows each."""
    with store.connect(path) as con:
        con.execute(
            "INSERT INTO ingested_messages (msg_id, vehicle_id, kind, topic, n_rows) "
            "SELECT 'm' || i, 'V' || (i % $v), 'telemetry', 't', $s FROM range($n) t(i)",
            {"v": VEHICLES, "s": SIGNALS, "n": messages})
        con.execute(
            "INSERT INTO telemetry SELECT 'V' || (i % $v), "
            "to_timestamp(1767225600 + i * 60 + k), 'S' || k, (i * k) % 97 / 10.0, 'm' || i "
            "FROM range($n) t(i), range($s) u(k)",
            {"v": VEHICLES, "s": SIGNALS, "n": messages})


def _split(whole: Path, tmp: Path, overlap: float) -> list[Path]:
    """Two stores holding every other message each, and ``overlap`` of them in both."""
    every = max(1, round(1 / (2 * overlap))) if overlap > 0 else 0
    paths = []
    for parity in (0, 1):
        path = tmp / f"worker-{parity}.duckdb"
        shutil.copy(whole, path)
        with store.connect(path) as con:
            for table in ("telemetry", "ingested_messages"):
                keep = f"CAST(substr(msg_id, 2) AS BIGINT) % 2 = {parity}"
                if every and parity == 1:  # the second worker also landed these copies
                    keep += f" OR CAST(substr(msg_id, 2) AS BIGINT) % {2 * every} = 0"
                con.execute(f"DELETE FROM {table} WHERE NOT ({keep})")
            paths.append(export.write_snapshot(con, tmp / f"snap-{parity}.duckdb"))
    return paths


def _time(serving: Path, snapshots: Path | list[Path], sql: str) -> tuple[float, Any]:
    with connect_serving(serving, snapshots) as con:
        started = time.perf_counter()
        row = con.execute(sql).fetchone()
        return time.perf_counter() - started, row


def _same(a: Any, b: Any) -> bool:
    """Equal rows, floats up to summation order."""
    return len(a) == len(b) and all(
        abs(x - y) <= 1e-9 * max(1.0, abs(x)) if isinstance(x, float) else x == y
        for x, y in zip(a, b, strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000,
                        help=f"telemetry messages of {SIGNALS} rows (default 100000)")
    parser.add_argument("--overlap", type=float, default=0.01,
                        help="share of messages both workers landed (default 0.01)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    load = [os.getloadavg()]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        whole = tmp / "whole.duckdb"
        _build(whole, args.messages)
        pair = _split(whole, tmp, args.overlap)
        with store.connect(whole) as con:
            one = export.write_snapshot(con, tmp / "snap-whole.duckdb")
        with store.connect_readonly(pair[1]) as con:
            copies = con.execute("SELECT count(*) FROM ingested_messages WHERE "
                                 "CAST(substr(msg_id, 2) AS BIGINT) % 2 = 0").fetchone()
        for name, sql in QUERIES.items():
            single: list[float] = []
            union: list[float] = []
            for run in range(args.repeat):
                s, a = _time(tmp / f"s1-{run}.duckdb", one, sql)
                u, b = _time(tmp / f"s2-{run}.duckdb", pair, sql)
                if not _same(a, b):
                    raise SystemExit(f"bench: {name} differs: one {a}, two {b}")
                single.append(s)
                union.append(u)
            results[name] = {"one_snapshot_s": round(statistics.median(single), 4),
                             "two_snapshots_s": round(statistics.median(union), 4),
                             "ratio": round(statistics.median(union)
                                            / statistics.median(single), 2)}
        load.append(os.getloadavg())
    print(orjson.dumps({
        "bench": "serving_union", "messages": args.messages, "rows": args.messages * SIGNALS,
        "vehicles": VEHICLES, "messages_in_both": int(copies[0]) if copies else 0,
        "repeat": args.repeat, "queries": results,
        "loadavg": [[round(x, 2) for x in la] for la in load],
    }).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

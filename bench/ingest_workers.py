"""Benchmark: one ``fleetcare ingest`` process against two on a shared subscription.

Issue 20 item 5. The same backlog (default 6 batches of 122,880 rows: 7,374 telemetry
messages of 100 signals) is drained through one real mosquitto, in the same run, once by ONE
``fleetcare ingest`` process and once by TWO with the same ``--share-group``, each with its
own landing store (DuckDB allows one writer process per file). As in ``bench/ingest.py``, the
persistent sessions exist first, the backlog is published while they are offline (mosquitto
deals a shared subscription's messages out among its sessions, offline ones included, and
queues each one's share), then the processes start.

The clock starts when the first process logs that it is about to connect (``admitting the 50
registered vehicles``: imports and the store are ready, no message can have arrived) and
stops when the receipts the workers publish after each commit name every published message,
which is what "committed and acknowledged" looks like from outside. Afterwards each store is
read: each worker's share, its own time (its start mark to the receipt of its last
message) and own rate, and the exactly-once check over the union of the two
``ingested_messages`` tables (count and distinct count of ``msg_id`` equal the published
count) and telemetry rows.

Why the rate does or does not double, from what the run measures: the CPU seconds each
worker and mosquitto spent during the drain (``/proc/PID/stat``), and the reference of the
same machine's decode-and-insert floor (orjson, Arrow, one ``INSERT`` per batch, no MQTT) run
by one process on the whole backlog and by two processes at once on half each: what two
cores give to the part of the work that is pure CPU, without the broker. ``rows_per_cpu_s``
(rows per CPU second of the ingest processes) and ``core_share`` (CPU seconds per second of
the drain: 1.0 is one whole core, 2.0 both) do not depend on how loaded the machine is the
way rates do: they tell whether two workers cost more CPU for the same rows, and how much of
the cores they actually got. ``start_gap_s`` is
how much later the second worker reached its start mark (both start at once and compete for
the cores while they import); the combined clock includes it, as a restart of both would.

    .venv/bin/python bench/ingest_workers.py [--batches 6] [--repeat 3]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import paho.mqtt.client as mqtt

# bench/ holds scripts named like our packages (bench/edge.py): import the packages, not them.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from edge.wire import contract  # noqa: E402
from pipeline.broker.harness import EmbeddedBroker  # noqa: E402
from pipeline.ingest.admission import Vehicle, register_vehicles  # noqa: E402
from pipeline.ingest.service import Ingestor  # noqa: E402
from pipeline.store import connection as store  # noqa: E402

# The backlog, its vehicles and the publishing client are bench/ingest.py's, imported as
# ``bench.ingest`` from the repository root (the directory above this one).
sys.path.append(str(_HERE.parent))
from bench.ingest import (  # noqa: E402
    PER_BATCH,
    SIGNALS,
    VEHICLES,
    backlog_payloads,
    connected_client,
    publish_backlog,
)

WAIT_S = 600.0
START_MARK = "admitting the"
"""Logged (``-v``) right before the sessions connect: the start of the clock."""
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class ReceiptWatcher:
    """Subscribes to every vehicle's receipt topic and notes when each ``msg_id`` was named."""

    def __init__(self, url: str, expected: int) -> None:
        self.expected = expected
        self.seen: dict[str, float] = {}
        self.done = threading.Event()
        subscribed = threading.Event()
        self._client = connected_client(url)
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.subscribe(contract.RECEIPT_TOPICS, qos=1)
        if not subscribed.wait(10):
            raise SystemExit("bench: no subscription to the receipt topics")

    def _on_message(self, _client: mqtt.Client, _userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        receipt = contract.decode_receipt(bytes(message.payload))
        for msg_id in receipt.msg_ids:
            self.seen.setdefault(msg_id, now)
        if len(self.seen) >= self.expected:
            self.done.set()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@dataclass(frozen=True, slots=True)
class Worker:
    """One ``fleetcare ingest`` process and when it reached its start mark."""

    proc: subprocess.Popen[str]
    started: threading.Event
    marks: dict[str, float]
    tail: collections.deque[str]
    """The last lines it logged, shown when it fails."""


def _spawn(url: str, db: Path, client_id: str, group: str | None) -> Worker:
    share = ["--share-group", group] if group else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "-v", "ingest", "--no-urgent", "--broker", url,
         "--db", str(db), "--client-id", client_id, "--rate-limit", "0", *share],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    started = threading.Event()
    marks: dict[str, float] = {}
    tail: collections.deque[str] = collections.deque(maxlen=20)

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line)
            if START_MARK in line and not started.is_set():
                marks["start"] = time.perf_counter()
                marks["cpu_at_start"] = _cpu_s(proc.pid)
                started.set()

    threading.Thread(target=read, daemon=True).start()
    return Worker(proc, started, marks, tail)


def _prepare(url: str, db: Path, client_id: str, group: str | None) -> None:
    """Register the bench fleet and create the worker's persistent sessions (then offline)."""
    with store.connect(db) as con:
        register_vehicles(con, [Vehicle(v, "Bench EV", "north") for v in VEHICLES])
    Ingestor(url, db, client_id=client_id, share_group=group).start().stop()


def _drain(url: str, wires: list[tuple[str, bytes]], dbs: Sequence[Path],
           mosquitto_pid: int | None) -> dict[str, Any]:
    """Drain ``wires`` with one ``fleetcare ingest`` per store in ``dbs``; what it measured."""
    tag = uuid.uuid4().hex[:8]
    group = f"bench{tag}" if len(dbs) > 1 else None
    ids = [f"bench-w{i}-{tag}" for i in range(len(dbs))]
    for db, client_id in zip(dbs, ids, strict=True):
        _prepare(url, db, client_id, group)
    publish_backlog(url, wires, WAIT_S)
    watcher = ReceiptWatcher(url, len(wires))
    broker_cpu0 = _cpu_s(mosquitto_pid) if mosquitto_pid else 0.0
    workers = [_spawn(url, db, client_id, group) for db, client_id in zip(dbs, ids, strict=True)]
    try:
        for worker in workers:
            if not worker.started.wait(WAIT_S):
                raise SystemExit("bench: an ingest process never reached its start mark: "
                                 + "".join(worker.tail))
        if not watcher.done.wait(WAIT_S):
            raise SystemExit(f"bench: only {len(watcher.seen)} of {len(wires)} receipted: "
                             + "".join(line for w in workers for line in w.tail))
        cpu = [_cpu_s(w.proc.pid) - w.marks["cpu_at_start"] for w in workers]
        broker_cpu = (_cpu_s(mosquitto_pid) - broker_cpu0) if mosquitto_pid else None
    finally:
        for worker in workers:
            worker.proc.terminate()
        for worker in workers:
            worker.proc.wait(timeout=WAIT_S)
        watcher.close()
    start = min(w.marks["start"] for w in workers)
    elapsed = max(watcher.seen.values()) - start
    shares, own_s = [], []
    for db, worker in zip(dbs, workers, strict=True):
        with store.connect_readonly(db) as con:
            mine = [str(r[0]) for r in con.execute(
                "SELECT msg_id FROM ingested_messages").fetchall()]
        shares.append(len(mine))
        own_s.append(max((watcher.seen[m] for m in mine), default=start) - worker.marks["start"])
    return {"seconds": elapsed, "messages": shares, "worker_seconds": own_s,
            "cpu_s": cpu, "broker_cpu_s": broker_cpu,
            "start_gap_s": max(w.marks["start"] for w in workers) - start,
            "exactly_once": _exactly_once(dbs)}


def _exactly_once(dbs: Sequence[Path]) -> dict[str, int]:
    """Counts over the union of the stores: messages, distinct messages, rows, distinct rows."""
    con = duckdb.connect()
    names = [f"w{i}" for i in range(len(dbs))]
    for name, db in zip(names, dbs, strict=True):
        con.execute(f"ATTACH '{db}' AS {name} (READ_ONLY)")
    messages = " UNION ALL ".join(f"SELECT msg_id FROM {n}.ingested_messages" for n in names)
    rows = " UNION ALL ".join(f"SELECT msg_id, ts, signal FROM {n}.telemetry" for n in names)
    m = con.execute(f"SELECT count(*), count(DISTINCT msg_id) FROM ({messages})").fetchone()
    r = con.execute(f"SELECT count(*), count(DISTINCT (msg_id, ts, signal)) FROM ({rows})"
                    ).fetchone()
    con.close()
    assert m is not None and r is not None
    return {"msg_ids": int(m[0]), "distinct_msg_ids": int(m[1]), "rows": int(r[0]),
            "distinct_rows": int(r[1])}


_BARE_CHILD = """
import sys, time, orjson, pyarrow as pa
from pipeline.store import connection as store
payloads = open(sys.argv[1], 'rb').read().split(b'\\n')
per_batch = int(sys.argv[3])
con = store.connect(sys.argv[2])

def land(payloads, table):
    cols = {'vehicle_id': [], 'ts': [], 'signal': [], 'value': [], 'msg_id': []}
    for payload in payloads:
        doc = orjson.loads(payload)
        n = len(doc['ts'])
        cols['vehicle_id'].extend([doc['vehicle_id']] * n)
        cols['msg_id'].extend([doc['msg_id']] * n)
        cols['ts'].extend(doc['ts'])
        cols['signal'].extend(doc['signal'])
        cols['value'].extend(doc['value'])
    con.register('batch', pa.table({
        'vehicle_id': cols['vehicle_id'], 'ts': pa.array(cols['ts'], pa.float64()),
        'signal': cols['signal'], 'value': pa.array(cols['value'], pa.float64()),
        'msg_id': cols['msg_id']}))
    con.execute(f'INSERT INTO {table} SELECT vehicle_id, to_timestamp(ts), signal, value, '
                'msg_id FROM batch')

con.execute('CREATE TEMP TABLE warm AS SELECT * FROM telemetry LIMIT 0')
land(payloads[:10], 'warm')  # first Arrow scan and insert of the process, off the clock
started = time.perf_counter()
for first in range(0, len(payloads), per_batch):
    land(payloads[first:first + per_batch], 'telemetry')
print(time.perf_counter() - started)
"""


def _bare_loops(payloads: list[bytes], tmp: Path, processes: int) -> float:
    """Seconds until ``processes`` bare decode-and-insert loops, run at once on an equal
    share of ``payloads`` each, have all finished (the slowest one's time)."""
    procs = []
    for i in range(processes):
        part = tmp / f"bare-{processes}-{i}.bin"
        part.write_bytes(b"\n".join(payloads[i::processes]))
        db = tmp / f"bare-{processes}-{i}-{uuid.uuid4().hex[:6]}.duckdb"
        with store.connect(db):
            pass  # migrated before the clock, as the ingest's store is
        procs.append(subprocess.Popen([sys.executable, "-c", _BARE_CHILD, str(part), str(db),
                                       str(PER_BATCH)], stdout=subprocess.PIPE, text=True))
    times = []
    for proc in procs:
        out, _ = proc.communicate(timeout=WAIT_S)
        if proc.returncode:
            raise SystemExit("bench: a bare loop failed")
        times.append(float(out.strip()))
    return max(times)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=6,
                        help=f"backlog size in batches of {PER_BATCH} messages, even so that "
                             f"each worker's share is whole batches (default 6)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    if args.batches < 2 or args.batches % 2:
        parser.error("--batches must be an even number of at least 2: each of the two "
                     "workers then gets whole batches and none waits out the flush interval")
    messages = args.batches * PER_BATCH
    rows = messages * SIGNALS
    one: list[dict[str, Any]] = []
    two: list[dict[str, Any]] = []
    bare1: list[float] = []
    bare2: list[float] = []
    load: list[tuple[float, float, float]] = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp_dir, EmbeddedBroker(prefer="mosquitto") as broker:
        tmp = Path(tmp_dir)
        for run in range(args.repeat):
            wires = backlog_payloads(messages, f"r{run}-{uuid.uuid4().hex[:6]}")
            payloads = [p for _, p in wires]
            bare1.append(_bare_loops(payloads, tmp, 1))
            bare2.append(_bare_loops(payloads, tmp, 2))
            one.append(_drain(broker.url, wires, [tmp / f"one{run}.duckdb"],
                              broker.mosquitto_pid))
            wires = backlog_payloads(messages, f"s{run}-{uuid.uuid4().hex[:6]}")
            two.append(_drain(broker.url, wires,
                              [tmp / f"two{run}-a.duckdb", tmp / f"two{run}-b.duckdb"],
                              broker.mosquitto_pid))
            load.append(os.getloadavg())
    for result in (*one, *two):
        check = result["exactly_once"]
        if not (check["msg_ids"] == check["distinct_msg_ids"] == messages
                and check["rows"] == check["distinct_rows"] == rows):
            raise SystemExit(f"bench: exactly-once check failed: {check}")
    one_rate, two_rate = rows / _median(one, "seconds"), rows / _median(two, "seconds")
    bare1_rate = rows / statistics.median(bare1)
    bare2_rate = rows / statistics.median(bare2)

    def rounded(run: dict[str, Any]) -> dict[str, Any]:
        return {"seconds": round(run["seconds"], 3),
                "rows_per_s": round(rows / run["seconds"]),
                "messages_per_worker": run["messages"],
                "worker_seconds": [round(s, 3) for s in run["worker_seconds"]],
                "worker_rows_per_s": [round(m * SIGNALS / s) for m, s in
                                      zip(run["messages"], run["worker_seconds"], strict=True)],
                "worker_cpu_s": [round(c, 2) for c in run["cpu_s"]],
                "worker_cpu_us_per_message": [round(c / m * 1e6) for c, m in
                                              zip(run["cpu_s"], run["messages"], strict=True)],
                "broker_cpu_s": (None if run["broker_cpu_s"] is None
                                 else round(run["broker_cpu_s"], 2)),
                "start_gap_s": round(run["start_gap_s"], 3),
                "exactly_once": run["exactly_once"]}

    print(orjson.dumps({
        "bench": "ingest_workers", "broker": broker.kind, "cpus": os.cpu_count(),
        "messages": messages, "signals_per_message": SIGNALS, "rows": rows,
        "batch_rows": PER_BATCH * SIGNALS, "repeat": args.repeat,
        "one_worker_rows_per_s": round(one_rate),
        "two_workers_rows_per_s": round(two_rate),
        "ratio_two_to_one": round(two_rate / one_rate, 3),
        "two_workers_own_rates_sum_rows_per_s": round(statistics.median(
            sum(m * SIGNALS / s for m, s in zip(r["messages"], r["worker_seconds"], strict=True))
            for r in two)),
        "two_workers_start_gap_s": round(_median(two, "start_gap_s"), 3),
        "one_worker_rows_per_cpu_s": round(rows / statistics.median(
            sum(r["cpu_s"]) for r in one)),
        "two_workers_rows_per_cpu_s": round(rows / statistics.median(
            sum(r["cpu_s"]) for r in two)),
        "one_worker_core_share": round(statistics.median(
            r["cpu_s"][0] / r["worker_seconds"][0] for r in one), 2),
        "two_workers_core_share": round(statistics.median(
            sum(r["cpu_s"]) / r["seconds"] for r in two), 2),
        "two_workers_share": [round(statistics.median(r["messages"][i] for r in two) / messages,
                                    3) for i in range(2)],
        "exactly_once": all(r["exactly_once"]["msg_ids"] == messages for r in two),
        "bare_loop_one_process_rows_per_s": round(bare1_rate),
        "bare_loop_two_processes_rows_per_s": round(bare2_rate),
        "bare_ratio_two_to_one": round(bare2_rate / bare1_rate, 3),
        "one_worker_runs": [rounded(r) for r in one],
        "two_worker_runs": [rounded(r) for r in two],
        "loadavg": [[round(x, 2) for x in la] for la in load],
    }).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: draining an MQTT backlog into DuckDB against a bare decode-and-insert loop.

A backlog of telemetry messages (100 signals each) is published at QoS 1 to a real local
mosquitto while the ingestor's persistent session is offline; then the ingestor starts and
the clock runs until every message is committed and acknowledged. The reference, measured
in the same run on the same payloads, is the floor any MQTT-to-DuckDB path sits on: orjson
decode, Arrow arrays, one ``INSERT ... SELECT`` per batch into a DuckDB file, no MQTT, no
deduplication, no acks. Prints one JSON object.

Both land batches of the ingest's default size (DuckDB's row group, 122,880 rows; a batch
closes at the first message that reaches it), and the backlog is a whole number of batches,
so the last batch does not wait out the ingest's flush interval. For continuity with the
first measurements, the bare loop also runs with 100k-row batches (``bare_loop_100k``): it
pays a write-ahead-log commit that batches of a whole row group avoid.

The backend checks stay in the measured path: the 50 bench vehicles are registered, and each
message passes the registration check and a per-vehicle rate limit. The backlog is drained
as fast as the machine goes (a vehicle's share arrives at over 100k rows/s), far above any
real vehicle's rate, so the limit is set high enough to refuse nothing; the JSON says so.

Memory (``flood``): ``fleetcare ingest`` runs as its own process, as deployed, and gets
normal telemetry with 30 oversize messages of 20 MB mixed in (one in every 41 messages,
the last message being one). The project's broker configuration refuses payloads over the
contract's limit, so this run uses it with ``message_size_limit 0`` (what a broker fleetcare
did not configure does): the oversize messages reach ingest, whose own bound is measured.
Its resident memory is read from ``/proc`` once it has subscribed (``idle_rss_mib``, the
reference) and its peak (``VmHWM``) once the last oversize message is dead-lettered;
``ratio_to_idle`` divides the two. It runs on each of ingest's paho clients: the fast one
never holds an oversize payload whole, the stock one (the fallback) holds each one whole
while paho reads it, then cuts it at once.

    .venv/bin/python bench/ingest.py [--batches 5] [--repeat 3] [--flood 30] [--flood-mb 20]
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pyarrow as pa
from paho.mqtt.enums import CallbackAPIVersion

# bench/ holds scripts named like our packages (bench/edge.py): import the packages, not them.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from edge.wire import contract  # noqa: E402
from pipeline.broker.auth import parse_broker_url  # noqa: E402
from pipeline.broker.harness import EmbeddedBroker  # noqa: E402
from pipeline.broker.limits import DEFAULT_LIMITS  # noqa: E402
from pipeline.ingest.admission import RateLimit, Vehicle, register_vehicles  # noqa: E402
from pipeline.ingest.service import FLUSH_ROWS, Ingestor  # noqa: E402
from pipeline.store import connection as store  # noqa: E402

SIGNALS = 100
PER_BATCH = -(-FLUSH_ROWS // SIGNALS)
"""Messages per batch: the ingest flushes at the first message that reaches FLUSH_ROWS."""
START_TS = 1_767_225_600.0
NAMES = [f"Vehicle.Powertrain.TractionBattery.Cell{i:02d}.Voltage" for i in range(SIGNALS)]
VEHICLES = [f"BENCH{i:03d}" for i in range(50)]
LIMIT = RateLimit(rows_per_s=10_000_000.0, burst_rows=10_000_000.0)
"""High enough that draining the backlog refuses nothing; the checks still run per message."""


def backlog_payloads(n: int, run: str) -> list[tuple[str, bytes]]:
    """``n`` telemetry messages of :data:`SIGNALS` signals, dealt round the bench vehicles."""
    wires = []
    for i in range(n):
        vehicle = VEHICLES[i % len(VEHICLES)]
        ts = [START_TS + i + k / SIGNALS for k in range(SIGNALS)]
        values = [3.6 + (i * SIGNALS + k) % 97 / 1000 for k in range(SIGNALS)]
        batch = contract.TelemetryBatch(f"{run}-{i}", vehicle, ts, NAMES, values)
        wires.append((contract.telemetry_topic(vehicle), contract.encode(batch)))
    return wires


def _bare_loop(payloads: list[bytes], db: Path, per_batch: int = PER_BATCH) -> float:
    con = store.connect(db)
    started = time.perf_counter()
    for first in range(0, len(payloads), per_batch):
        vehicle: list[str] = []
        msg: list[str] = []
        ts: list[float] = []
        signal: list[str] = []
        value: list[float] = []
        for payload in payloads[first:first + per_batch]:
            doc = orjson.loads(payload)
            n = len(doc["ts"])
            vehicle.extend([doc["vehicle_id"]] * n)
            msg.extend([doc["msg_id"]] * n)
            ts.extend(doc["ts"])
            signal.extend(doc["signal"])
            value.extend(doc["value"])
        con.register("batch", pa.table({
            "vehicle_id": vehicle, "ts": pa.array(ts, pa.float64()), "signal": signal,
            "value": pa.array(value, pa.float64()), "msg_id": msg}))
        con.execute("INSERT INTO telemetry SELECT vehicle_id, to_timestamp(ts), signal, value, "
                    "msg_id FROM batch")
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed


def connected_client(url: str) -> mqtt.Client:
    """A paho client connected to ``url`` with its network loop running (no queue cap)."""
    host, port = parse_broker_url(url)
    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.max_queued_messages_set(0)
    client.on_connect = lambda *_: connected.set()
    client.connect(host, port)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("bench: no connection to the broker")
    return client


def publish_backlog(url: str, wires: list[tuple[str, bytes]], wait_s: float = 120.0) -> None:
    """Publish ``wires`` at QoS 1 and return once the broker has acknowledged them all."""
    client = connected_client(url)
    infos = [client.publish(topic, payload, qos=1) for topic, payload in wires]
    infos[-1].wait_for_publish(timeout=wait_s)
    while client.want_write() or any(not i.is_published() for i in infos[-100:]):
        time.sleep(0.01)
    client.disconnect()
    client.loop_stop()


def _ingest(url: str, wires: list[tuple[str, bytes]], db: Path) -> float:
    client_id = f"bench-{uuid.uuid4().hex[:8]}"
    with store.connect(db) as con:
        register_vehicles(con, [Vehicle(v, "Bench EV", "north") for v in VEHICLES])
    Ingestor(url, db, client_id=client_id).start().stop()  # the session exists: mosquitto queues
    publish_backlog(url, wires)
    started = time.perf_counter()
    with Ingestor(url, db, client_id=client_id, flush_rows=FLUSH_ROWS, rate_limit=LIMIT,
                  require_registered_vehicles=True) as ingestor:
        if not ingestor.wait_for(lambda s: s.messages_landed >= len(wires), timeout=600):
            raise SystemExit(f"bench: only {ingestor.stats.messages_landed} messages landed")
        elapsed = time.perf_counter() - started
        if ingestor.stats.dead_letters:
            raise SystemExit(f"bench: {ingestor.stats.dead_letters} dead letters")
    return elapsed


FLOOD_WAIT_S = 600.0


def _memory_kib(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of process ``pid``, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith(field + ":"))


def _flood(url: str, db: Path, oversize: int, size: int, mqtt_client: str) -> dict[str, Any]:
    """``fleetcare ingest`` under normal traffic with ``oversize`` messages of ``size`` bytes."""
    client_id = f"bench-flood-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, FLEETCARE_PIPELINE__MQTT_CLIENT=mqtt_client)
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "-v", "ingest", "--no-urgent", "--broker", url,
         "--db", str(db), "--client-id", client_id, "--allow-unregistered",
         "--rate-limit", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    def wait_for(needle: str, count: int = 1) -> None:
        while count:
            try:
                count -= needle in lines.get(timeout=FLOOD_WAIT_S)
            except queue.Empty:
                raise SystemExit(f"bench: ingest never logged {needle!r}") from None

    threading.Thread(target=read, daemon=True).start()
    topic = contract.telemetry_topic("BENCHBIG")
    body = b"x" * size  # one object for all: the publisher need not hold them all
    normal = backlog_payloads(40 * oversize, f"flood-{mqtt_client}")
    wires = [w for i, w in enumerate(normal)
             for w in ([w, (topic, body)] if i % 40 == 39 else [w])]
    try:
        wait_for("ingesting")
        idle = _memory_kib(proc.pid, "VmRSS")
        started = time.perf_counter()
        publish_backlog(url, wires)
        wait_for(f"dead-lettering a message on {topic}", oversize)
        elapsed = time.perf_counter() - started
        peak = _memory_kib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(timeout=FLOOD_WAIT_S)
    with store.connect_readonly(db) as con:
        row = con.execute("SELECT (SELECT count(*) FROM telemetry), count(*), "
                          "sum(octet_length(payload)), sum(payload_bytes) FROM dead_letters"
                          ).fetchone()
    assert row is not None
    if (row[0], row[1]) != (len(normal) * SIGNALS, oversize):
        raise SystemExit(f"bench: flood landed {row[0]} rows and {row[1]} dead letters")
    return {
        "mqtt_client": mqtt_client, "normal_messages": len(normal),
        "normal_rows": len(normal) * SIGNALS, "oversize_messages": oversize,
        "oversize_bytes_each": size, "seconds": round(elapsed, 2),
        "idle_rss_mib": round(idle / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
        "ratio_to_idle": round(peak / idle, 2),
        "dead_letter_bytes_kept": int(row[2]), "dead_letter_bytes_published": int(row[3]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=5,
                        help=f"backlog size in batches of {PER_BATCH} messages (default 5)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--flood", type=int, default=30,
                        help="oversize messages in the memory run (default 30; 0 skips it)")
    parser.add_argument("--flood-mb", type=float, default=20.0,
                        help="size of each oversize message in MB (default 20)")
    args = parser.parse_args(argv)
    messages = args.batches * PER_BATCH
    bare: list[float] = []
    bare_100k: list[float] = []
    ingest: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(prefer="mosquitto") as broker:
        for run in range(args.repeat):
            wires = backlog_payloads(messages, f"r{run}")
            payloads = [p for _, p in wires]
            bare.append(_bare_loop(payloads, Path(tmp) / f"bare{run}.duckdb"))
            bare_100k.append(_bare_loop(payloads, Path(tmp) / f"b100k{run}.duckdb",
                                        100_000 // SIGNALS))
            ingest.append(_ingest(broker.url, wires, Path(tmp) / f"ingest{run}.duckdb"))
    flood: list[dict[str, Any]] = []
    if args.flood:
        unlimited = replace(DEFAULT_LIMITS, message_size_limit=0)
        with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(
                prefer="mosquitto", limits=unlimited) as broker:
            flood = [_flood(broker.url, Path(tmp) / f"flood-{kind}.duckdb", args.flood,
                            int(args.flood_mb * 1_000_000), kind) for kind in ("fast", "stock")]
    rows = messages * SIGNALS
    bare_rate, ingest_rate = rows / statistics.median(bare), rows / statistics.median(ingest)
    bare_100k_rate = rows / statistics.median(bare_100k)
    print(orjson.dumps({
        "bench": "ingest", "broker": "mosquitto", "messages": messages,
        "signals_per_message": SIGNALS, "rows": rows, "batch_rows": PER_BATCH * SIGNALS,
        "repeat": args.repeat,
        "bare_loop_rows_per_s": round(bare_rate), "ingest_rows_per_s": round(ingest_rate),
        "ratio_to_bare_loop": round(ingest_rate / bare_rate, 3),
        "bare_loop_100k_rows_per_s": round(bare_100k_rate),
        "ratio_to_bare_loop_100k": round(ingest_rate / bare_100k_rate, 3),
        "targets": {"ratio_to_bare_loop": 0.5, "ingest_rows_per_s": 800_000},
        "admission": {"registered_vehicles": len(VEHICLES), "checked_per_message": True,
                      "rate_limit_rows_per_s": LIMIT.rows_per_s,
                      "rate_burst_rows": LIMIT.burst_rows, "refused": 0},
        "flood": flood, "flood_target_peak_rss_mib": 400, "flood_broker_message_size_limit": 0,
    }).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Soak: a fleet of thousands through real agents, with a kill -9 of ingest and of the broker.

Everything runs as deployed, each command its own process: ``fleetcare broker`` (mosquitto
with the configuration it generates, persistence in its data directory), ``fleetcare
ingest`` on its defaults, and ``fleetcare sim run``, whose agents (spool, publisher, MQTT
client: the gateway's own classes) are spread over as many agent processes as the
descriptor limit needs, and delete a spooled message only on the store's receipt. While the
fleet's data is landing, ingest is killed with SIGKILL and started again, then the broker
(the harness and its mosquitto, one process group) likewise, on the same port and data
directory. Kill times count from the first receipt ingest publishes for a fleet vehicle, so
they fall while the fleet is sending however long the agent processes took to start.

Then, as the reference, the same fleet runs again in a fresh directory with no kill at all,
and the JSON gives the killed run's figures as ratios to it (``reference``).

What it reports, each figure next to its reference from the same run:

* ``signals_spooled`` (the agents' own counters, the sim's summary) against ``rows_landed``
  in the store; ``duplicates`` = rows landed - distinct (msg_id, ts, signal), as the tests
  count them, and ``duplicate_samples`` = rows landed - distinct (vehicle, ts, signal);
  ``rows_lost`` = signals spooled - distinct rows landed.
* ``drain_s``: from the moment the fleet's last simulated day was done (every agent had
  read its bus to the end: ``sim run --progress`` reaches the last day) to the last commit of
  a fleet message (``ingested_messages.landed_at``); ``sim run`` itself exits once every
  spool is empty, i.e. every message receipted (``sim_exit_after_last_day_s``).
* ingest's peak resident memory (``VmHWM`` from ``/proc``: of each ingest process of the run,
  and the highest) against the same ingest idle, subscribed and before the fleet starts.
* the agents' receipt counters (receipted, sent again for want of a receipt, left in the
  spools), mosquitto's "messages are being dropped" warnings and the agents' "lost the
  connection" lines.

The simulated fleet compresses a day into a fraction of a second and registers itself only
through its closing truth records, so ingest runs with ``--allow-unregistered`` and
``--rate-limit 0`` (as the demo does); everything else is its default. The exit status is 1
when rows were lost or landed twice, or the fleet did not finish.

    .venv/bin/python bench/fleet_soak.py [--vehicles 2000] [--days 4] [--snapshot-s 0.2]
        [--kill-ingest-at 10] [--ingest-down 5] [--kill-broker-at 30] [--broker-down 5]
        [--no-reference]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# bench/ holds scripts named like our packages (bench/edge.py): import the packages, not them.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from edge.sim.capacity import plan_shards  # noqa: E402
from edge.wire import contract  # noqa: E402
from pipeline.broker.harness import free_port, wait_for_port  # noqa: E402
from pipeline.store import connection as store  # noqa: E402

REPO = _HERE.parent
FLEET_PREFIX = "VIN"
"""``fleetcare sim run`` names its vehicles VIN00000, VIN00001, ..."""
PROBE = "SOAKPROBE"
"""The vehicle whose message proves ingest is subscribed before the fleet starts."""
INGEST_FLAGS = ["--no-urgent", "--allow-unregistered", "--rate-limit", "0"]
START_TIMEOUT_S = 120.0
_ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
"""A terminal control sequence (colour, cursor), as rich writes them."""


def _fleetcare(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def _memory_kib(pid: int, field: str) -> int | None:
    """``VmRSS`` or ``VmHWM`` of ``pid`` in KiB (None once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _poll(condition: Callable[[], bool], timeout: float, pause: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(pause)
    return True


class Broker:
    """``fleetcare broker`` in a process group of its own, so SIGKILL takes mosquitto too."""

    def __init__(self, port: int, data_dir: Path, log: Path) -> None:
        self.port, self.data_dir, self.log = port, data_dir, log
        self.url = f"mqtt://127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self._proc = subprocess.Popen(
                _fleetcare("broker", "--port", str(self.port), "--data-dir", str(self.data_dir)),
                cwd=REPO, stdout=sink, stderr=sink, start_new_session=True)
        if not wait_for_port("127.0.0.1", self.port, START_TIMEOUT_S):
            raise SystemExit(f"bench: fleetcare broker did not listen: {self.log.read_text()}")

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, sig)
        self._proc.wait(timeout=60)
        self._proc = None
        # mosquitto may outlive its harness by a moment: the port tells when it is gone.
        _poll(lambda: not wait_for_port("127.0.0.1", self.port, 0.05), 30)

    def kill_9(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def dropped_warnings(self) -> int:
        """mosquitto's "Outgoing messages are being dropped" lines (its log is in data_dir)."""
        log = self.data_dir / "mosquitto.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return text.count("Outgoing messages are being dropped")


class Ingest:
    """``fleetcare ingest`` as deployed (a fixed client id: its session outlives a kill)."""

    def __init__(self, broker: Broker, db_path: Path, log: Path) -> None:
        self.broker, self.db_path, self.log = broker, db_path, log
        self.peaks_kib: list[int] = []
        """The ``VmHWM`` of each process started, in order."""
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start it and return once it says it is ingesting."""
        sink = self.log.open("a", encoding="utf-8")
        self._proc = subprocess.Popen(
            _fleetcare("-v", "ingest", "--broker", self.broker.url, "--db", str(self.db_path),
                       "--client-id", "fleetcare-ingest", *INGEST_FLAGS),
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started = threading.Event()
        threading.Thread(target=self._copy, args=(self._proc.stderr, sink, started),
                         daemon=True).start()
        self.peaks_kib.append(0)
        threading.Thread(target=self._sample, args=(self._proc.pid, len(self.peaks_kib) - 1),
                         daemon=True).start()
        proc = self._proc
        if not _poll(lambda: started.is_set() or proc.poll() is not None, START_TIMEOUT_S) \
                or not started.is_set():
            raise SystemExit(f"bench: ingest did not start: {self.log.read_text()[-2000:]}")

    @staticmethod
    def _copy(stream: IO[str] | None, sink: IO[str], started: threading.Event) -> None:
        assert stream is not None
        with sink:
            for line in stream:
                sink.write(line)
                if "ingesting" in line:
                    started.set()

    def _sample(self, pid: int, index: int) -> None:
        """Keep the highest ``VmHWM`` (the kernel's own peak) while the process lives."""
        while (peak := _memory_kib(pid, "VmHWM")) is not None:
            self._keep_peak(index, peak)
            time.sleep(0.2)

    def _keep_peak(self, index: int, kib: int | None) -> None:
        self.peaks_kib[index] = max(self.peaks_kib[index], kib or 0)

    @property
    def peak_kib(self) -> int:
        """The highest peak of every process started."""
        return max(self.peaks_kib, default=0)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def rss_kib(self) -> int:
        return _memory_kib(self.pid, "VmRSS") or 0

    def kill_9(self) -> None:
        assert self._proc is not None
        self._keep_peak(-1, _memory_kib(self.pid, "VmHWM"))
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait(timeout=60)
        self._proc = None

    def stop(self) -> int:
        """SIGTERM: it lands what it holds, acknowledges it and exits; its exit status."""
        if self._proc is None:
            return 0
        self._keep_peak(-1, _memory_kib(self.pid, "VmHWM"))
        self._proc.send_signal(signal.SIGTERM)
        code = self._proc.wait(timeout=300)
        self._proc = None
        return code


class Receipts:
    """Follows every vehicle's receipts (a persistent session, so a broker restart that keeps
    sessions keeps ours): when the fleet's data starts landing, and how much has."""

    def __init__(self, broker: Broker) -> None:
        self._lock = threading.Lock()
        self.fleet_ids: set[str] = set()
        self.probe_receipted = threading.Event()
        self.first_at: float | None = None
        self.last_new_at: float | None = None
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                   client_id=f"bench-soak-{uuid.uuid4().hex[:8]}",
                                   clean_session=False)
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = lambda c, *_: c.subscribe(contract.RECEIPT_TOPICS, qos=1)
        self._client.on_message = self._on_message
        self._client.connect("127.0.0.1", broker.port)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        receipt = contract.decode_receipt(bytes(message.payload))
        if receipt.vehicle_id == PROBE:
            self.probe_receipted.set()
            return
        if not receipt.vehicle_id.startswith(FLEET_PREFIX):
            return
        now = time.monotonic()
        with self._lock:
            before = len(self.fleet_ids)
            self.fleet_ids.update(receipt.msg_ids)
            if len(self.fleet_ids) > before:
                self.last_new_at = now
                if self.first_at is None:
                    self.first_at = now

    def count(self) -> int:
        with self._lock:
            return len(self.fleet_ids)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _probe(broker: Broker, receipts: Receipts) -> None:
    """Publish a probe message until ingest receipts it: its subscription is in place."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for attempt in range(int(START_TIMEOUT_S)):
            message = contract.TelemetryBatch(f"{PROBE}-{uuid.uuid4().hex}", PROBE,
                                              [time.time()], ["Vehicle.Speed"], [float(attempt)])
            client.publish(contract.telemetry_topic(PROBE), contract.encode(message), qos=1)
            if receipts.probe_receipted.wait(1.0):
                return
        raise SystemExit("bench: ingest never receipted the probe message")
    finally:
        client.disconnect()
        client.loop_stop()


class SimOutput:
    """``sim run``'s stderr, copied to its log, and when its progress reached the last day."""

    def __init__(self, stream: IO[bytes], log: Path, days: int) -> None:
        # The bar (rich, forced by --progress) reads "simulating ━━━ 4/4 days", with colour
        # codes between the parts: they are removed before looking.
        self._marker = re.compile(rf"\b{days}/{days}\s+days".encode())
        self.last_day_at: float | None = None
        """``time.time()`` when every agent process had finished the last simulated day."""
        self._thread = threading.Thread(target=self._copy, args=(stream, log), daemon=True)
        self._thread.start()

    def _copy(self, stream: IO[bytes], log: Path) -> None:
        tail = b""
        with log.open("wb") as sink:
            while chunk := os.read(stream.fileno(), 65536):
                sink.write(chunk)
                tail = _ANSI.sub(b"", tail + chunk)[-256:]
                if self.last_day_at is None and self._marker.search(tail):
                    self.last_day_at = time.time()

    def join(self) -> None:
        self._thread.join(timeout=60)


class Schedule:
    """Kills and restarts at offsets from the first fleet receipt, while the fleet sends.

    Each step waits for the one before it: a restart returns once the process is back (ingest
    says it is ingesting), so a slow start under load delays the next kill, and the JSON
    gives the times the steps really happened. Ingest must be back before the broker goes
    down, since ``fleetcare ingest`` refuses to start without its broker.
    """

    def __init__(self, broker: Broker, ingest: Ingest, args: argparse.Namespace,
                 kills: bool = True) -> None:
        self._steps: list[tuple[float, str, Callable[[], None]]] = sorted([
            (args.kill_ingest_at, "ingest killed", ingest.kill_9),
            (args.kill_ingest_at + args.ingest_down, "ingest back up", ingest.start),
            (args.kill_broker_at, "broker killed", broker.kill_9),
            (args.kill_broker_at + args.broker_down, "broker back up", broker.start),
        ] if kills else [], key=lambda step: step[0])
        self.done: dict[str, float] = {}
        """What happened, seconds after the first fleet receipt."""
        self.skipped: list[str] = []
        """Kills not made: the fleet had stopped before they fell due."""

    def run_due(self, since: float, fleet_running: bool) -> None:
        """Run what is due. A kill that falls due after the fleet stopped is not run, nor its
        restart (it would not be *during* the run, and the JSON says it was skipped); a
        restart always is, once its outage has lasted."""
        elapsed = time.monotonic() - since
        while self._steps:
            at, name, action = self._steps[0]
            if at > elapsed:
                if fleet_running or name.endswith("back up"):
                    return
                target = name.split()[0]
                self._steps = [s for s in self._steps if not s[1].startswith(target)]
                self.skipped.append(target)
                continue
            self._steps.pop(0)
            action()
            self.done[name] = round(time.monotonic() - since, 1)

    @property
    def pending(self) -> bool:
        return bool(self._steps)


def _spool_leftovers(spool_dir: Path) -> int:
    """Entries still in the agents' spools after ``sim run`` exited."""
    left = 0
    for path in spool_dir.glob("*/spool.sqlite3"):
        with contextlib.closing(sqlite3.connect(path)) as db:
            left += int(db.execute("SELECT count(*) FROM entry").fetchone()[0])
    return left


def _store_figures(db_path: Path) -> dict[str, Any]:
    like = f"{FLEET_PREFIX}%"
    with store.connect_readonly(db_path) as con:
        rows, distinct, samples = con.execute(
            "SELECT count(*), count(DISTINCT (msg_id, ts, signal)), "
            "count(DISTINCT (vehicle_id, ts, signal)) FROM telemetry "
            "WHERE vehicle_id LIKE $v", {"v": like}).fetchone() or (0, 0, 0)
        messages, last = con.execute(
            "SELECT count(*), epoch(max(landed_at)) FROM ingested_messages "
            "WHERE vehicle_id LIKE $v", {"v": like}).fetchone() or (0, None)
        dead = con.execute("SELECT count(*) FROM dead_letters WHERE topic LIKE $t",
                           {"t": f"%/{like}/%"}).fetchone()
    return {"rows": int(rows), "distinct": int(distinct), "samples": int(samples),
            "messages": int(messages),
            "last_landed_at": float(last) if last is not None else None,
            "dead_letters": int(dead[0]) if dead else 0}


def soak(args: argparse.Namespace, root: Path, kills: bool = True) -> dict[str, Any]:
    """One run in ``root`` (with the kills, or none for the reference); its figures."""
    bench_started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    broker = Broker(free_port(), root / "broker", root / "broker.log")
    db_path, spool_dir, sim_log = root / "soak.duckdb", root / "spool", root / "sim.log"
    ingest = Ingest(broker, db_path, root / "ingest.log")
    sim: subprocess.Popen[bytes] | None = None
    receipts: Receipts | None = None
    schedule = Schedule(broker, ingest, args, kills)
    try:  # started inside: an interrupt during a start still stops what did start
        broker.start()
        receipts = Receipts(broker)
        ingest.start()
        _probe(broker, receipts)
        idle_kib = ingest.rss_kib()
        extra = []
        if args.processes:
            extra += ["--processes", str(args.processes)]
        if args.vehicles_per_process:
            extra += ["--vehicles-per-process", str(args.vehicles_per_process)]
        sim_started = time.monotonic()
        sim = subprocess.Popen(
            _fleetcare("sim", "run", "--broker", broker.url, "--vehicles", str(args.vehicles),
                       "--days", str(args.days), "--snapshot-s", str(args.snapshot_s),
                       "--spool-dir", str(spool_dir), "--connect-timeout",
                       str(args.connect_timeout), "--drain-timeout", str(args.drain_timeout),
                       "--receipt-timeout", str(args.receipt_timeout), "--progress", *extra),
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert sim.stderr is not None
        sim_out = SimOutput(sim.stderr, sim_log, args.days)
        out: list[bytes] = []
        reader = threading.Thread(target=lambda: out.append(sim.stdout.read() if sim.stdout
                                                             else b""), daemon=True)
        reader.start()
        while sim.poll() is None or schedule.pending:
            if receipts.first_at is not None:
                schedule.run_due(receipts.first_at, fleet_running=sim.poll() is None)
            elif sim.poll() is not None:
                break  # the fleet stopped before anything landed: nothing to schedule
            time.sleep(0.1)
        sim_ended, sim_wall_ended = time.monotonic(), time.time()
        reader.join(timeout=60)
        sim_out.join()
        sim_code = sim.wait()
        lines = b"".join(out).strip().splitlines()
        summary = orjson.loads(lines[-1]) if lines else None
        expected = int(summary["messages"]) if summary else 0
        # sim run exits once its spools are empty; a kill of ingest after its last receipts
        # could still leave commits behind: wait until quiet.
        _poll(lambda: receipts.count() >= expected or time.monotonic()
              - max(receipts.last_new_at or sim_ended, sim_ended) > args.quiet,
              args.quiet + 60, pause=0.2)
        receipted = receipts.count()
        ingest_code = ingest.stop()
    finally:
        if sim is not None and sim.poll() is None:
            sim.kill()
            sim.wait()
        if receipts is not None:
            receipts.close()
        ingest.stop()
        broker.stop()
    figures = _store_figures(db_path)
    sim_text = sim_log.read_text(errors="replace")
    run_s = sim_ended - sim_started
    first = receipts.first_at
    last, last_day = figures["last_landed_at"], sim_out.last_day_at
    drain_s = (max(0.0, last - last_day) if last is not None and last_day is not None
               else None)
    spooled = int(summary["signals_spooled"]) if summary else None
    plan = plan_shards(args.vehicles, processes=args.processes,
                       per_process=args.vehicles_per_process, local_capacity=0)
    return {
        "bench": "fleet_soak", "vehicles": args.vehicles, "days": args.days,
        "snapshot_s": args.snapshot_s, "agent_processes": plan.processes,
        "vehicles_per_process_max": max(len(s) for s in plan.shards),
        "broker": "fleetcare broker (mosquitto, generated config, persistence in data dir)",
        "ingest": "fleetcare ingest " + " ".join(INGEST_FLAGS),
        "agents": "fleetcare sim run: spool entries deleted on the store's receipts",
        "receipt_timeout_s": args.receipt_timeout,
        "sim_exit_status": sim_code, "ingest_exit_status": ingest_code,
        "sim_error": None if summary else _failure_lines(sim_text),
        "run_s": round(run_s, 1),
        "startup_s": round(first - sim_started, 1) if first is not None else None,
        "kills_s_after_first_receipt": schedule.done,
        "kills_skipped_fleet_had_stopped": schedule.skipped,
        "kill_plan_s": ({"ingest": [args.kill_ingest_at, args.ingest_down],
                         "broker": [args.kill_broker_at, args.broker_down]} if kills else None),
        "signals_spooled": spooled,
        "rows_landed": figures["rows"],
        "distinct_rows": figures["distinct"],
        "duplicates": figures["rows"] - figures["distinct"],
        "duplicate_samples": figures["rows"] - figures["samples"],
        "rows_lost": spooled - figures["distinct"] if spooled is not None else None,
        "messages_spooled": expected,
        "messages_landed": figures["messages"],
        "messages_receipted_seen": receipted,
        "agents_receipted": summary.get("messages_receipted") if summary else None,
        "agents_resent": summary.get("messages_resent") if summary else None,
        "agents_undelivered": summary.get("messages_undelivered") if summary else None,
        "agents_spool_dropped": summary.get("spool_dropped") if summary else None,
        "dead_letters": figures["dead_letters"],
        "left_in_spools": _spool_leftovers(spool_dir),
        "drain_s": round(drain_s, 1) if drain_s is not None else None,
        "sim_exit_after_last_day_s": (round(sim_wall_ended - last_day, 1)
                                      if last_day is not None else None),
        "drain_ratio_to_run": round(drain_s / run_s, 3) if drain_s is not None else None,
        "ingest_idle_rss_mib": round(idle_kib / 1024, 1),
        "ingest_peak_rss_mib": round(ingest.peak_kib / 1024, 1),
        "ingest_peak_rss_mib_each": [round(kib / 1024, 1) for kib in ingest.peaks_kib],
        "ingest_peak_ratio_to_idle": round(ingest.peak_kib / idle_kib, 2) if idle_kib else None,
        "broker_dropped_warnings": broker.dropped_warnings(),
        "agent_lost_connection_lines": sim_text.count("lost the connection"),
        "bench_s": round(time.monotonic() - bench_started, 1),
    }


REFERENCE_KEYS = ("run_s", "drain_s", "sim_exit_after_last_day_s", "signals_spooled",
                  "rows_landed", "duplicates", "rows_lost", "agents_resent",
                  "ingest_peak_rss_mib", "agent_lost_connection_lines", "bench_s")


def _failure_lines(log_text: str) -> list[str]:
    """What says why the fleet failed: the last traceback in its log (an agent process that
    died of an unexpected error prints one), else the log's last line."""
    lines = log_text.replace("\r", "\n").strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
    if not starts:
        return lines[-1:]
    block = [lines[starts[-1]]]
    for line in lines[starts[-1] + 1:]:
        block.append(line)
        if not line.startswith((" ", "\t")):  # the exception line ends the traceback
            break
    return block


def _with_reference(killed: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """The killed run's figures, the reference run's, and the ratios between them."""
    def ratio(key: str) -> float | None:
        a, b = killed.get(key), reference.get(key)
        return round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) \
            and b else None

    return {**killed, "reference": {
        "what": "the same fleet, same commands, in a fresh directory, with no kill",
        **{key: reference.get(key) for key in REFERENCE_KEYS},
        "run_ratio": ratio("run_s"), "drain_ratio": ratio("drain_s"),
        "ingest_peak_rss_ratio": ratio("ingest_peak_rss_mib"),
    }}


def _sound(figures: dict[str, Any]) -> bool:
    """Every signal landed once and the fleet finished."""
    return (figures["sim_exit_status"] == 0 and figures["rows_lost"] == 0
            and figures["duplicates"] == 0 and figures["duplicate_samples"] == 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=2000, help="fleet size (default 2000)")
    parser.add_argument("--days", type=int, default=4, help="simulated days (default 4)")
    parser.add_argument("--snapshot-s", type=float, default=0.2,
                        help="seconds of bus traffic per simulated day (default 0.2)")
    parser.add_argument("--processes", type=int, help="agent processes (default: automatic)")
    parser.add_argument("--vehicles-per-process", type=int,
                        help="most vehicles per agent process (default: the fd limit's)")
    parser.add_argument("--kill-ingest-at", type=float, default=10.0,
                        help="seconds after the first fleet receipt (default 10)")
    parser.add_argument("--ingest-down", type=float, default=5.0,
                        help="seconds ingest stays down (default 5)")
    parser.add_argument("--kill-broker-at", type=float, default=30.0,
                        help="seconds after the first fleet receipt (default 30)")
    parser.add_argument("--broker-down", type=float, default=5.0,
                        help="seconds the broker stays down (default 5)")
    parser.add_argument("--connect-timeout", type=float, default=60.0,
                        help="sim run --connect-timeout (default 60)")
    parser.add_argument("--quiet", type=float, default=30.0,
                        help="after sim run exits, give up waiting once nothing new has "
                             "been receipted for this long (default 30 s)")
    parser.add_argument("--drain-timeout", type=float, default=600.0,
                        help="sim run --drain-timeout: how long the agents wait for their "
                             "last receipts (default 600)")
    parser.add_argument("--receipt-timeout", type=float, default=30.0,
                        help="sim run --receipt-timeout: when an agent sends again what no "
                             "receipt named (default 30, the agent's own default)")
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the reference run of the same fleet without kills")
    parser.add_argument("--keep", type=Path,
                        help="keep logs, store, broker data and spools in this new directory")
    args = parser.parse_args(argv)
    ingest_out = (args.kill_ingest_at, args.kill_ingest_at + args.ingest_down)
    broker_out = (args.kill_broker_at, args.kill_broker_at + args.broker_down)
    if ingest_out[0] < broker_out[1] and broker_out[0] < ingest_out[1]:
        # fleetcare ingest refuses to start while its broker is down, by design.
        parser.error("the ingest and broker outages overlap: give them separate windows")
    if args.keep is not None:
        if args.keep.exists() and any(args.keep.iterdir()):
            # An old broker session or store would be counted as this run's.
            parser.error(f"--keep {args.keep}: give an empty or new directory")
        args.keep.mkdir(parents=True, exist_ok=True)
        figures = _runs(args, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="fleetcare-soak-") as tmp:
            figures = _runs(args, Path(tmp))
    print(orjson.dumps(figures).decode())
    return 0 if figures["sound"] else 1


def _runs(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The run with kills, then (unless --no-reference) the same fleet without them."""
    killed = soak(args, root / "kills")
    if not args.reference:
        return {**killed, "sound": _sound(killed)}
    reference = soak(args, root / "reference", kills=False)
    return {**_with_reference(killed, reference),
            "sound": _sound(killed) and _sound(reference)}


if __name__ == "__main__":
    sys.exit(main())

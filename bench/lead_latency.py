"""Benchmark: a critical fault code on the CAN bus to a signed lead stored by the CRM.

Everything on the path is real: a python-can virtual bus, an unmodified edge agent with its
on-disk spool and MQTT publisher, the broker (mosquitto when installed), ingest writing a
DuckDB file with :class:`pipeline.leads.urgent.UrgentLeads` as its ``after_commit`` hook, and
the reference CRM over HTTP on 127.0.0.1. Each run sends one ``DIAG_DtcReport`` frame with
``P0AA6`` (HV isolation fault: critical) for a fresh vehicle and times frame sent → the CRM
answering 2xx to the lead for that vehicle.

Ingest runs two ways. ``frame_to_crm_2xx_flush_*`` wires the hook into an in-process
:class:`~pipeline.ingest.service.Ingestor`, as tests and the demo do;
``frame_to_crm_2xx_fleetcare_ingest_flush_*`` runs ``fleetcare ingest`` as its own process
with the CRM's URL and key in its environment, so the hook is the one the command installs
by itself (the path a deployment runs). The two should agree: the process boundary adds no
step between the MQTT message and the CRM, only a second interpreter competing for the cores.

The reference, measured in the same run on the same broker, is a bare MQTT QoS 1 publish →
receive round trip; the ratio says how many such round trips a critical lead costs. Two
ingest settings are measured: the default ``flush_interval_s`` (1 s: ingest batches for
throughput, so a lone message waits up to a second) and 0.05 s (what a latency-first
deployment would choose). Prints one JSON object.

    .venv/bin/python bench/lead_latency.py [--runs 20]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# bench/ holds scripts named like our packages (bench/edge.py): import the packages, not them.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import can  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402

from edge.agent import Agent  # noqa: E402
from edge.config import REFERENCE_DBC, REFERENCE_RULES  # noqa: E402
from edge.decode import Decoder, load_dbcs  # noqa: E402
from edge.publish import Publisher  # noqa: E402
from edge.rules import load_rules  # noqa: E402
from edge.sim.masterdata import SimVehicle, write_master_data  # noqa: E402
from edge.spool import Spool  # noqa: E402
from pipeline.broker.auth import parse_broker_url  # noqa: E402
from pipeline.broker.harness import EmbeddedBroker  # noqa: E402
from pipeline.crm.http_server import JsonHttpServer  # noqa: E402
from pipeline.ingest.service import Ingestor  # noqa: E402
from pipeline.leads.urgent import UrgentLeads  # noqa: E402
from pipeline.sandbox.reference_crm import CrmReceiver  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"fleetcare-bench-lead-latency").decode()
P0AA6 = 0x0AA6


class TimedCrm:
    """The reference CRM, noting when it answered 2xx to each vehicle's first lead."""

    def __init__(self) -> None:
        self.crm = CrmReceiver(SECRET)
        self.stored: dict[str, float] = {}
        self.cond = threading.Condition()
        self.server = JsonHttpServer({("POST", "/leads"): self._post})

    def _post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        status, answer = self.crm.accept(headers, body)
        if status == 200:
            vehicle = json.loads(body)["vehicle"]["vehicle_id"]
            with self.cond:
                self.stored.setdefault(vehicle, time.perf_counter())
                self.cond.notify_all()
        return status, answer

    def wait(self, vehicle: str, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: vehicle in self.stored, timeout)
            return self.stored.get(vehicle)


def _one_lead(broker_url: str, crm: TimedCrm, workdir: Path, vehicle: str) -> float:
    db = load_dbcs([REFERENCE_DBC])[0]
    channel = f"bench-{uuid.uuid4().hex}"
    sender = can.Bus(interface="virtual", channel=channel, preserve_timestamps=True)
    reader = can.Bus(interface="virtual", channel=channel)
    spool = Spool(workdir / vehicle)
    publisher = Publisher(spool, broker_url, client_id=f"bench-{vehicle}")
    agent = Agent(vehicle, reader, Decoder([db]), load_rules(REFERENCE_RULES), spool, publisher)
    stop = threading.Event()
    runner = threading.Thread(target=agent.run, args=(stop,), kwargs={"poll_s": 0.01})
    publisher.start()
    runner.start()
    try:
        dtc = db.get_message_by_name("DIAG_DtcReport")
        data = dtc.encode({"DtcCode": P0AA6, "DtcStatus": 1, "EcuAddress": 0x10, "DtcCount": 1})
        started = time.perf_counter()
        sender.send(can.Message(arbitration_id=dtc.frame_id, data=data, is_extended_id=False,
                                timestamp=time.time()))
        arrived = crm.wait(vehicle, timeout=30)
        if arrived is None:
            raise RuntimeError(f"no lead for {vehicle} within 30 s")
        return arrived - started
    finally:
        stop.set()
        runner.join()
        publisher.stop()
        sender.shutdown()
        reader.shutdown()


def _fleet_store(db_path: Path, vehicles: list[str]) -> None:
    """A store with the vehicles, their customers, centres, capacity and catalogue imported
    by `fleetcare fleet import` from the simulator's CSV files (same for both ways of running
    ingest, so both do the same advice work per lead)."""
    folder = db_path.with_name(db_path.stem + "-master-data")
    paths = write_master_data(folder, [SimVehicle(v, "Aurora EV", "north") for v in vehicles],
                              seed=0, start=dt.datetime.now(dt.UTC).date())
    command = [sys.executable, "-m", "flows.cli", "fleet", "import", "--db", str(db_path)]
    for kind, path in paths.items():
        command += [f"--{kind}", str(path)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def _leads(broker_url: str, runs: int, flush_interval_s: float, workdir: Path) -> list[float]:
    db_path = workdir / f"fleet-{flush_interval_s}.duckdb"
    vehicles = [f"BENCH-{flush_interval_s}-{i}" for i in range(runs)]
    _fleet_store(db_path, vehicles)
    crm = TimedCrm()
    with crm.server:
        hook = UrgentLeads(crm.server.base_url + "/leads", SECRET)
        ingestor = Ingestor(broker_url, db_path, client_id=f"bench-ingest-{uuid.uuid4().hex}",
                            flush_interval_s=flush_interval_s, after_commit=hook)
        ingestor.start()
        try:
            return [_one_lead(broker_url, crm, workdir, v) for v in vehicles]
        finally:
            ingestor.stop()
            hook.close()


@contextmanager
def _fleetcare_ingest(broker_url: str, db_path: Path, crm_url: str,
                      flush_interval_s: float) -> Iterator[None]:
    """``fleetcare -v ingest`` as a process with the CRM settings in its environment, from
    the moment it says it is subscribed (with urgent leads on) until SIGTERM."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCARE_")}
    env.update(FLEETCARE_PIPELINE__CRM_URL=crm_url, FLEETCARE_PIPELINE__CRM_SECRET=SECRET)
    child = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "-v", "ingest", "--broker", broker_url, "--db",
         str(db_path), "--client-id", f"bench-ingest-{uuid.uuid4().hex}", "--flush-interval",
         str(flush_interval_s)],
        cwd=_HERE.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:  # drain stderr all along, or a full pipe would stall ingest
        assert child.stderr is not None
        for line in child.stderr:
            lines.append(line)
            if "ingesting" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        ready.wait(120)
        if child.poll() is not None or not any("ingesting" in line for line in lines):
            raise RuntimeError("fleetcare ingest did not subscribe: " + "".join(lines[-5:]))
        if not any("urgent leads on" in line for line in lines):
            raise RuntimeError("fleetcare ingest did not turn urgent leads on: "
                               + "".join(lines[-5:]))
        yield
    except BaseException:
        print("fleetcare ingest said:\n" + "".join(lines[-20:]), file=sys.stderr)
        raise
    finally:
        child.terminate()
        try:
            child.wait(60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        reader.join(10)
    if child.returncode != 0:
        raise RuntimeError(f"fleetcare ingest exited {child.returncode}: "
                           + "".join(lines[-5:]))


def _cli_leads(broker_url: str, runs: int, flush_interval_s: float,
               workdir: Path) -> list[float]:
    db_path = workdir / f"cli-fleet-{flush_interval_s}.duckdb"
    vehicles = [f"BENCH-CLI-{flush_interval_s}-{i}" for i in range(runs)]
    _fleet_store(db_path, vehicles)
    crm = TimedCrm()
    with crm.server, _fleetcare_ingest(broker_url, db_path, crm.server.base_url + "/leads",
                                       flush_interval_s):
        return [_one_lead(broker_url, crm, workdir, v) for v in vehicles]


def _mqtt_round_trips(broker_url: str, runs: int) -> list[float]:
    host, port = parse_broker_url(broker_url)
    topic = f"bench/rtt/{uuid.uuid4().hex}"
    got = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda *a: got.set()
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect(host, port)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(host, port)
    pub.loop_start()
    subscribed.wait(10)
    times = []
    for _ in range(runs):
        got.clear()
        started = time.perf_counter()
        pub.publish(topic, b"x" * 200, qos=1)
        if not got.wait(10):
            raise RuntimeError("MQTT round trip did not complete in 10 s")
        times.append(time.perf_counter() - started)
    for client in (pub, sub):
        client.loop_stop()
        client.disconnect()
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2), "p99_ms": round(p99 * 1000, 2),
            "max_ms": round(ordered[-1] * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        workdir = Path(tmp)
        reference = _summary(_mqtt_round_trips(broker.url, max(args.runs, 50)))
        results: dict[str, Any] = {"bench": "lead_latency", "broker": broker.kind,
                                   "runs": args.runs, "reference_mqtt_rtt": reference}
        for flush in (1.0, 0.05):
            for name, measure in (("", _leads), ("fleetcare_ingest_", _cli_leads)):
                lead = _summary(measure(broker.url, args.runs, flush, workdir))
                lead["ratio_p50_to_mqtt_rtt"] = round(lead["p50_ms"] / reference["p50_ms"], 1)
                results[f"frame_to_crm_2xx_{name}flush_{flush}s"] = lead
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

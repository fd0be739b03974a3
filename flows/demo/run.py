"""``make demo``: the whole pipeline on one machine, with real parts, in a few minutes.

The demo plays every role in turn: it onboards the simulated fleet the way a real one is
onboarded (``fleetcare sim fleet`` writes the DMS's five CSV files, ``fleetcare fleet import``
imports them: the same commands a user runs), starts a broker (mosquitto when installed, else
the embedded one) and the ingest process's loop, admitting registered vehicles only, runs a
simulated fleet through real edge agents
in a child process (``fleetcare sim run``, the vehicles' side), waits until every signal the
agents spooled has landed in DuckDB, imports the workshop's repair orders (``fleetcare sim
workshop`` writes ``repair_orders.csv``, ``fleetcare service import`` imports it: the labels),
starts a reference CRM, then runs the Prefect maintenance flow on Prefect's ephemeral local
server. It returns a report of what happened, with the simulator's ground truth as referee.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from flows.demo.options import DemoOptions
from flows.demo.outputs import DemoFiles, next_steps, write_outputs
from pipeline.broker.harness import EmbeddedBroker
from pipeline.ingest.service import Ingestor, IngestStats
from pipeline.ml.referee import referee_report
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store import connection as store


@dataclass(frozen=True)
class DemoReport:
    """What the demo did, for printing and for tests."""

    broker: str
    db_path: str
    fleet: dict[str, Any]
    ingest: dict[str, Any]
    flow: dict[str, Any]
    crm_received: int
    leads_by_component: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)
    repair_orders: dict[str, Any] = field(default_factory=dict)
    referee: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The promoted models judged against the simulator's ground truth (never trained on)."""
    master_data: dict[str, Any] = field(default_factory=dict)
    """``fleetcare fleet import``'s summary of the fleet's master data."""
    held_leads: int = 0
    """Leads held (no customer on record, no consent to contact): never sent."""
    files: DemoFiles | None = None
    """The report, the leads and what the CRM received, as files in the output folder."""


@contextlib.contextmanager
def _crm_secret_for_the_flow(secret: str) -> Iterator[None]:
    """The deliver task reads the signing key from the environment: set for the flow's run,
    and put back after it, so a caller's process (a test session) keeps its own settings."""
    name = "FLEETCARE_PIPELINE__CRM_SECRET"
    before = os.environ.get(name)
    os.environ[name] = secret
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def run_demo(options: DemoOptions, log: Callable[[str], None] = print) -> DemoReport:
    """Run the whole pipeline once; see the module docstring."""
    options = dataclasses.replace(options, start=first_day(options))
    options.output_dir.mkdir(parents=True, exist_ok=True)
    db_path = options.output_dir / "fleet.duckdb"
    for stale in (db_path, db_path.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    seconds: dict[str, float] = {}
    with EmbeddedBroker(prefer=options.broker) as broker:
        log(f"broker: {broker.kind} at {broker.url}")
        started = time.monotonic()
        master = _onboard(options, db_path, log)
        fleet, landed = _simulate_and_ingest(options, broker.url, db_path, log)
        seconds["simulate_and_ingest"] = round(time.monotonic() - started, 1)
    orders = _import_workshop(options, db_path, log)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    with _crm_secret_for_the_flow(secret), CrmReceiver(secret) as crm:
        log(f"CRM receiver: {crm.url}")
        started = time.monotonic()
        flow_result = _run_flow(options, db_path, crm.url)
        seconds["flow"] = round(time.monotonic() - started, 1)
        received = crm.received_count
        crm_leads = crm.leads()
    files = write_outputs(options.output_dir, db_path, crm_leads)
    log(f"report, leads and what the CRM received written to {options.output_dir}")
    with store.connect_readonly(db_path) as con:
        rows = con.execute("SELECT component, count(*) FROM leads GROUP BY 1 ORDER BY 1").fetchall()
        held = con.execute("SELECT count(*) FROM leads WHERE state = 'held'").fetchall()[0]
        judged = referee_report(con)
    return DemoReport(broker.kind, str(db_path), fleet, dataclasses.asdict(landed), flow_result,
                      received, {str(c): int(n) for c, n in rows}, seconds, orders, judged,
                      master, int(held[0]), files)


def first_day(options: DemoOptions) -> str:
    """The simulated window's first day: ``options.start``, else ``days`` before today."""
    if options.start is not None:
        return options.start
    today = dt.datetime.now(dt.UTC).date()
    return (today - dt.timedelta(days=options.days)).isoformat()


def _import_workshop(options: DemoOptions, db_path: Path,
                     log: Callable[[str], None]) -> dict[str, Any]:
    """The workshop's history, as a DMS exports it, imported the way a user imports it: the
    labels the flow trains on. Runs once the vehicles' window is over and ingest is stopped
    (ingest holds the one file while it runs)."""
    folder = options.output_dir / "master-data"
    _fleetcare("sim", "workshop", *_fleet_args(options), "--days", str(options.days),
               "--start", str(options.start), "--out", str(folder))
    result = _fleetcare("service", "import", "--db", str(db_path),
                        str(folder / "repair_orders.csv"))
    summary: dict[str, Any] = result["repair_orders"]
    log(f"repair orders imported from {folder}: {summary['inserted']} new")
    return summary


def _onboard(options: DemoOptions, db_path: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Write the fleet's master data as CSV files and import them, as subprocesses running
    the same ``fleetcare`` commands a user runs; returns the import's JSON summary."""
    folder = options.output_dir / "master-data"
    # Capacity starts today: the flow advises (and books slots) on the real date.
    today = time.strftime("%Y-%m-%d", time.gmtime())
    _fleetcare("sim", "fleet", *_fleet_args(options), "--start", today, "--out", str(folder),
               "--window-start", str(options.start), "--days", str(options.days))
    summary = _fleetcare("fleet", "import", "--db", str(db_path), str(folder))
    log(f"master data imported from {folder}: "
        + ", ".join(f"{t} {c['inserted']}" for t, c in summary["tables"].items()))
    return summary


def _fleet_args(options: DemoOptions) -> list[str]:
    """What makes ``sim fleet``, ``sim workshop`` and ``sim run`` describe the same fleet."""
    return ["--vehicles", str(options.vehicles), "--seed", str(options.seed),
            "--failing-share", str(options.failing_share)]


def _fleetcare(*args: str) -> dict[str, Any]:
    """Run one ``fleetcare`` command; the JSON it prints on stdout."""
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], stdout=subprocess.PIPE,
                          check=True)
    result: dict[str, Any] = orjson.loads(done.stdout)
    return result


def _simulate_and_ingest(options: DemoOptions, broker_url: str, db_path: Path,
                         log: Callable[[str], None]) -> tuple[dict[str, Any], IngestStats]:
    # The register comes from the imported vehicles.csv; the simulated fleet publishes 180
    # days in seconds, so no rate limit.
    ingestor = Ingestor(broker_url, db_path, client_id="fleetcare-demo-ingest",
                        require_registered_vehicles=True, rate_limit=None)
    ingestor.start()
    try:
        log(f"simulating {options.vehicles} vehicles for {options.days} days "
            "through real edge agents ...")
        fleet = _run_simulator(options, broker_url)
        expected_rows, expected_messages = fleet["signals_spooled"], fleet["messages"]
        log(f"waiting for ingest to land {expected_rows:,} rows ...")
        ingestor.wait_for(lambda s: s.messages_landed + s.duplicates >= expected_messages
                          and s.telemetry_rows >= expected_rows, timeout=600)
    finally:
        ingestor.stop()
    return fleet, ingestor.stats


def _run_simulator(options: DemoOptions, broker_url: str) -> dict[str, Any]:
    """The vehicles' side runs as its own process, as it would on real gateways."""
    command = [sys.executable, "-m", "flows.cli", "sim", "run", "--broker", broker_url,
               *_fleet_args(options), "--days", str(options.days), "--start",
               str(options.start), "--snapshot-s", str(options.snapshot_s)]
    if not options.progress:
        command.append("--no-progress")  # else its stderr (ours) decides: a bar on a terminal
    done = subprocess.run(command, stdout=subprocess.PIPE, check=True)
    summary: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    summary.pop("per_vehicle", None)
    return summary


def _run_flow(options: DemoOptions, db_path: Path, crm_url: str) -> dict[str, Any]:
    from flows.demo.maintenance import maintenance_flow

    result: dict[str, Any] = maintenance_flow(str(db_path), crm_url,
                                              horizon_days=options.horizon_days,
                                              seed=options.seed)
    return result


def format_report(report: DemoReport) -> str:
    """The human-readable summary ``make demo`` ends with."""
    f, i = report.fleet, report.ingest
    lines = [
        "",
        "fleetcare demo: what happened",
        f"  broker      {report.broker}",
        f"  fleet       {f['vehicles']} vehicles, {f['days']} simulated days",
        f"  frames      {f['frames_sent']:,} on the buses, {f['frames_read']:,} read by the "
        f"agents, {f['frames_decoded']:,} decoded, {f['unknown_frames']:,} unknown ids",
        f"  signals     {f['signals_spooled']:,} published, {i['telemetry_rows']:,} rows landed "
        f"({i['duplicates']:,} redeliveries ignored, {i['dead_letters']:,} dead letters), "
        f"{f['dtc_events']:,} fault-code events",
    ]
    if report.master_data:
        tables = report.master_data["tables"]
        lines.append(f"  dealer      {tables['vehicles']['inserted']} vehicles, "
                     f"{tables['customers']['inserted']} customers, "
                     f"{tables['service_centres']['inserted']} centres imported with "
                     "fleetcare fleet import")
    if report.repair_orders:
        lines.append(f"  workshop    {report.repair_orders['rows']} repair orders imported "
                     "(the labels the models learn from)")
    for model in report.flow["models"]:
        lines.append(f"  model       {model['component']}: {_quality(model)}")
    for component, judged in report.referee.items():
        lead = judged["median_lead_days"]
        lines.append(
            f"  referee     {component}: {judged['warned_in_time']} of "
            f"{judged['real_failures']} real failures among the held-out vehicles warned "
            "about in time" + (f", median {lead:g} days ahead" if lead is not None else "")
            + " (ground truth, never trained on)")
    lines.extend(_scoring_lines(report.flow.get("scoring") or {}))
    leads = ", ".join(f"{c} {n}" for c, n in report.leads_by_component.items()) or "none"
    lines += [
        f"  leads       {leads}; {report.crm_received} delivered to the CRM as signed webhooks"
        f"; {report.held_leads} held (never sent: see leads list --held below)",
        f"  timings     {report.seconds}",
        "",
    ]
    if report.files is not None:
        lines += next_steps(report.files, report.db_path)
    return "\n".join(lines)


def _scoring_lines(scoring: dict[str, Any]) -> list[str]:
    """Vehicles scored per component, and those skipped for lacking a required signal."""
    components = scoring.get("components") or []
    if not components:
        return []
    scored = ", ".join(f"{c['component']} {c['scored']}" for c in components)
    skipped = ", ".join(
        f"{c['component']} {sum(len(s['vehicle_ids']) for s in c['skipped'])}"
        for c in components if c["skipped"])
    return [f"  scores      vehicles scored: {scored}"
            + (f"; not scored for missing signals: {skipped}" if skipped else "")]


def _quality(model: dict[str, Any]) -> str:
    """The model's calls on its held-out vehicles, and whether it now scores the fleet."""
    events = model.get("events")
    if not events:
        return f"skipped ({model['metrics'].get('skipped', 'no model')})"
    parts = [f"{model['n_test_vehicles']} held-out vehicles, {events['failures']} failures, "
             f"{events['warned']} warned a day or more ahead ({events['warned_14d']} by 14 days)"]
    if events["median_lead_days"] is not None:
        parts.append(f"median lead {events['median_lead_days']:g} days")
    precision = events["onset_precision"]
    parts.append(f"onset precision {precision:.2f}" if precision is not None
                 else "no decided call")
    rate = events["false_alarms_per_100_vehicle_months"]
    if rate is not None:
        parts.append(f"{rate:.1f} false alarms per 100 vehicle-months")
    promotion = model.get("promotion") or {}
    parts.append("promoted" if model.get("promoted") else
                 str(promotion.get("reason", "not promoted")).split(" (")[0])
    return ", ".join(parts)

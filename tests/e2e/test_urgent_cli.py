"""A critical fault code on the bus becomes a signed lead at the CRM through the real commands.

Every part is the one a deployment runs, each in its own process where a deployment has one:
``fleetcare broker`` (mosquitto with the configuration the project generates), ``fleetcare
ingest`` with the CRM's URL and signing key in its environment and the DMS's register and
customers given by ``--vehicles`` and ``--customers``, and ``fleetcare edge replay`` of a
candump log written here that carries one ``DIAG_DtcReport`` frame with ``P0AA6`` (HV
isolation fault: critical). The CRM is the sandbox's reference receiver over HTTP on
127.0.0.1, validating each lead against the schema; it stores a lead only once its Standard
Webhooks signature verifies. No flow runs: the lead is raised by ingest's own after-commit
hook and delivered from its outbox.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import pytest

from edge.config import REFERENCE_DBC
from edge.decode import load_dbcs
from edge.sim.masterdata import SimVehicle, write_master_data
from pipeline.broker.harness import find_mosquitto, free_port, wait_for_port
from pipeline.cli.services import _urgent_hook
from pipeline.config import load_pipeline_settings
from pipeline.leads.urgent import UrgentLeads
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store import connection as store
from tests.background import Background
from tests.e2e.replay_helpers import REPO
from tests.polling import wait_until
from tests.processes import cli, cli_env

SECRET = "whsec_" + base64.b64encode(b"fleetcare-urgent-cli-test-key").decode()
P0AA6 = 0x0AA6
TIMEOUT_S = 90.0
"""Generous on purpose: several Python processes start on two shared cores."""

pytestmark = [pytest.mark.e2e, pytest.mark.broker]


def service(command: list[str], env: dict[str, str]) -> Background:
    """A long-running ``fleetcare`` command in the repository, its stderr collected."""
    return Background(command, cwd=REPO, env=env, name=" ".join(command[3:5]),
                      wait_s=TIMEOUT_S)


@dataclass(frozen=True)
class Deployment:
    """The broker's URL and a fresh vehicle, its register file and a candump log of its fault."""

    broker_url: str
    vehicle: str
    fleet_file: Path
    log: Path
    db: Path
    customers_file: Path


@pytest.fixture
def cli_broker() -> Iterator[str]:
    """``fleetcare broker`` as its own process on a free port (mosquitto)."""
    if find_mosquitto() is None:
        pytest.skip("needs mosquitto: the production broker")
    port = free_port()
    broker = service(cli("broker", "--port", str(port), "--broker-kind", "mosquitto"), cli_env())
    try:
        if not wait_for_port("127.0.0.1", port, TIMEOUT_S):
            pytest.fail(f"fleetcare broker did not listen on {port}: {broker.lines}")
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        assert broker.stop() == 0, broker.lines


@pytest.fixture
def deployment(cli_broker: str, tmp_path: Path) -> Deployment:
    vehicle = f"URG-{uuid.uuid4().hex[:8]}"
    # the DMS's register and customers (a consenting owner: else the urgent lead is held)
    dms = write_master_data(tmp_path / "dms", [SimVehicle(vehicle, "Aurora EV", "north")],
                            seed=0, start=dt.date.today())
    dtc = load_dbcs([REFERENCE_DBC])[0].get_message_by_name("DIAG_DtcReport")
    data = dtc.encode({"DtcCode": P0AA6, "DtcStatus": 1, "EcuAddress": 0x10, "DtcCount": 1})
    log = tmp_path / "fault.log"
    log.write_text(f"({time.time() - 5:.6f}) can0 {dtc.frame_id:03X}#{bytes(data).hex().upper()}\n")
    return Deployment(cli_broker, vehicle, dms["vehicles"], log, tmp_path / "fleet.duckdb",
                      dms["customers"])


def _ingest(dep: Deployment, *flags: str, env: dict[str, str]) -> Background:
    """``fleetcare -v ingest`` once it says it is subscribed (what it is sent from then on
    lands)."""
    ingest = service(cli("-v", "ingest", "--broker", dep.broker_url, "--db", str(dep.db),
                          "--client-id", f"ingest-{dep.vehicle}", "--vehicles",
                          str(dep.fleet_file), "--customers", str(dep.customers_file),
                          "--flush-interval", "0.05", *flags), env)
    ingest.wait_for_text("ingesting")
    return ingest


def _replay(dep: Deployment, spool: Path) -> dict[str, object]:
    """``fleetcare edge replay`` of the fault log until its spool drained; its summary."""
    done = subprocess.run(
        cli("edge", "replay", str(dep.log), "--dbc", str(REFERENCE_DBC), "--broker",
             dep.broker_url, "--vehicle", dep.vehicle, "--spool-dir", str(spool), "--taps", ""),
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    summary: dict[str, object] = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert summary["drained"] is True, summary
    return summary


def _store(db: Path, sql: str) -> list[tuple[object, ...]]:
    with store.connect_readonly(db) as con:
        return [tuple(row) for row in con.execute(sql).fetchall()]


def test_a_critical_fault_frame_becomes_a_signed_lead_at_the_crm(
    deployment: Deployment, tmp_path: Path,
) -> None:
    with CrmReceiver(SECRET, validate=True) as crm:
        ingest = _ingest(deployment, env=cli_env(crm_url=crm.url, crm_secret=SECRET))
        try:
            assert any("urgent leads on" in line for line in ingest.lines), ingest.lines
            _replay(deployment, tmp_path / "spool")
            assert wait_until(lambda: len(crm.leads()) >= 1, TIMEOUT_S, 0.1), (
                crm.rejected_count, ingest.lines)
        finally:
            status = ingest.stop()
        assert status == 0, ingest.lines
        (lead,) = crm.leads()
        assert crm.rejected_count == 0
    assert lead["vehicle"]["vehicle_id"] == deployment.vehicle
    assert (lead["severity"], lead["contact"], lead["roadside_assistance"]) == (
        "critical", "immediate", True)
    assert [code["code"] for code in lead["evidence"]["fault_codes"]] == ["P0AA6"]
    # The store agrees: the lead was raised by ingest and its outbox row is delivered.
    assert _store(deployment.db, "SELECT l.vehicle_id, l.state, o.status, o.attempts FROM leads l"
                                 " JOIN outbox o USING (lead_id)") == [
        (deployment.vehicle, "sent", "delivered", 1)]


def test_no_urgent_lands_the_fault_and_sends_nothing(
    deployment: Deployment, tmp_path: Path,
) -> None:
    snapshot = tmp_path / "snapshot.duckdb"
    with CrmReceiver(SECRET, validate=True) as crm:
        ingest = _ingest(deployment, "--no-urgent", "--snapshot", str(snapshot),
                         "--maintenance-interval", "1",
                         env=cli_env(crm_url=crm.url, crm_secret=SECRET))
        try:
            assert any("urgent leads off (--no-urgent)" in line for line in ingest.lines)
            _replay(deployment, tmp_path / "spool")
            # The snapshot is written between batches, after any after-commit hook ran.
            assert wait_until(lambda: _landed_codes(snapshot) == ["P0AA6"], TIMEOUT_S,
                              0.1), ingest.lines
        finally:
            status = ingest.stop()
        assert status == 0, ingest.lines
        assert (crm.received_count, crm.rejected_count) == (0, 0)
    assert _store(deployment.db, "SELECT upper(code) FROM dtc_events") == [("P0AA6",)]
    assert _store(deployment.db, "SELECT count(*) FROM leads") == [(0,)]
    assert _store(deployment.db, "SELECT count(*) FROM outbox") == [(0,)]


def _landed_codes(snapshot: Path) -> list[str]:
    if not snapshot.exists():
        return []
    try:
        return [str(row[0]) for row in _store(snapshot, "SELECT upper(code) FROM dtc_events")]
    except duckdb.Error:  # replaced while we opened it: the next poll reads the new one
        return []


def test_without_crm_settings_ingest_says_why_urgent_leads_are_off(tmp_path: Path) -> None:
    """Decided before ingest connects: a broker nobody listens on ends the run after it."""
    done = subprocess.run(
        cli("ingest", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--db",
             str(tmp_path / "fleet.duckdb")),
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    off = [line for line in done.stderr.splitlines() if "urgent leads" in line]
    assert len(off) == 1, done.stderr
    assert ("urgent leads off: FLEETCARE_PIPELINE__CRM_URL and FLEETCARE_PIPELINE__CRM_SECRET "
            "not set") in off[0]
    assert done.returncode == 1  # the unreachable broker, reported in one line


@pytest.mark.parametrize(("settings", "why"), [
    ({"crm_secret": SECRET}, "FLEETCARE_PIPELINE__CRM_URL not set"),
    ({"crm_url": "http://127.0.0.1:9/leads"}, "FLEETCARE_PIPELINE__CRM_SECRET not set"),
    ({"crm_url": "http://127.0.0.1:9/leads", "crm_secret": SECRET}, None),
])
def test_by_default_urgent_leads_need_both_the_crm_url_and_its_key(
    settings: dict[str, str], why: str | None, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same decision as the command's, from the same settings, without a process each."""
    for name in [k for k in os.environ if k.startswith("FLEETCARE_")]:
        monkeypatch.delenv(name)
    for name, value in settings.items():
        monkeypatch.setenv(f"FLEETCARE_PIPELINE__{name.upper()}", value)
    caplog.set_level(logging.INFO, logger="pipeline.cli.services")
    hook = _urgent_hook(None, load_pipeline_settings())
    (line,) = [r.getMessage() for r in caplog.records if "urgent leads" in r.getMessage()]
    if why is None:
        assert isinstance(hook, UrgentLeads) and hook.crm_url == settings["crm_url"]
        assert line.startswith("urgent leads on: critical faults are delivered to ")
        hook.close()
    else:
        assert hook is None
        assert line.startswith(f"urgent leads off: {why}, so critical faults wait")


@pytest.mark.parametrize(("secret", "error"), [
    ("", "--urgent needs the CRM's signing key: set FLEETCARE_PIPELINE__CRM_SECRET"),
    ("not-a-key", ""),  # refused by the settings, or by the hook's own check: either says why
])
def test_urgent_without_a_valid_key_is_refused_before_anything_starts(
    secret: str, error: str, tmp_path: Path,
) -> None:
    db = tmp_path / "fleet.duckdb"
    done = subprocess.run(
        cli("ingest", "--urgent", "--broker", f"mqtt://127.0.0.1:{free_port()}", "--db",
             str(db)),
        cwd=REPO, env=cli_env(crm_secret=secret), capture_output=True, text=True,
        timeout=TIMEOUT_S)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"fleetcare ingest: error: {error}"), line
    assert "whsec_" in line and (secret == "" or secret not in line)  # a bad key: not echoed
    assert not db.exists()  # refused before the store was opened

"""Two ``fleetcare ingest`` workers on a shared subscription, as the ingest page deploys them.

Real processes throughout (``fleetcare broker``, two ``fleetcare ingest``, ``fleetcare edge
replay``, the reference CRM over HTTP): worker A runs with urgent leads, worker B with
``--no-fault-codes``; each has its own store and snapshot. The same critical fault is reported
twice by the vehicle (two replays, two messages): both reach worker A, whose second advice
finds the vehicle's open lead, so the CRM gets one lead. Dealt out to both workers, each would
have raised its own. The serving store reads both snapshots and holds the lead once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store.serving import connect_serving
from tests.background import Background
from tests.e2e.test_urgent_cli import (  # noqa: F401  (fixtures)
    SECRET,
    TIMEOUT_S,
    Deployment,
    _landed_codes,
    _replay,
    _store,
    cli_broker,
    deployment,
    service,
)
from tests.polling import wait_until
from tests.processes import cli, cli_env

pytestmark = [pytest.mark.e2e, pytest.mark.broker]


def _worker(dep: Deployment, name: str, tmp_path: Path, *flags: str,
            env: dict[str, str]) -> Background:
    """One worker of the share group, with its own client id, store and snapshot."""
    worker = service(cli("-v", "ingest", "--broker", dep.broker_url, "--share-group",
                         f"g-{dep.vehicle}", "--client-id", f"ingest-{name}-{dep.vehicle}",
                         "--db", str(tmp_path / f"landing-{name}.duckdb"),
                         "--snapshot", str(tmp_path / f"snapshot-{name}.duckdb"),
                         "--maintenance-interval", "1", "--vehicles", str(dep.fleet_file),
                         "--customers", str(dep.customers_file), "--flush-interval", "0.05",
                         *flags), env)
    worker.wait_for_text("ingesting")
    return worker


def test_a_critical_fault_reported_twice_to_two_workers_is_one_lead(
        deployment: Deployment, tmp_path: Path) -> None:  # noqa: F811  (the fixture)
    snapshots = [tmp_path / "snapshot-a.duckdb", tmp_path / "snapshot-b.duckdb"]
    with CrmReceiver(SECRET, validate=True) as crm:
        env = cli_env(crm_url=crm.url, crm_secret=SECRET)
        workers = [_worker(deployment, "a", tmp_path, "--urgent", env=env),
                   _worker(deployment, "b", tmp_path, "--urgent", "--no-fault-codes", env=env)]
        try:
            # the worker without fault codes subscribes to telemetry only
            assert "/dtc" not in workers[1].wait_for_line("ingest: listening on")
            assert "/dtc" in workers[0].wait_for_line("ingest: listening on")
            _replay(deployment, tmp_path / "spool-1")
            assert wait_until(lambda: len(crm.leads()) >= 1, TIMEOUT_S, 0.1), workers[0].lines
            _replay(deployment, tmp_path / "spool-2")
            # the snapshot is written between batches, after the urgent hook of the batch ran
            assert wait_until(lambda: _landed_codes(snapshots[0]) == ["P0AA6", "P0AA6"],
                              TIMEOUT_S, 0.1), workers[0].lines
            assert wait_until(lambda: snapshots[1].exists(), TIMEOUT_S, 0.1)
        finally:
            statuses = [w.stop() for w in workers]
        assert statuses == [0, 0], [w.lines for w in workers]
        assert len(crm.leads()) == 1 and crm.rejected_count == 0
    assert _landed_codes(snapshots[1]) == []
    assert _store(tmp_path / "landing-a.duckdb", "SELECT count(*) FROM leads") == [(1,)]
    assert _store(tmp_path / "landing-b.duckdb", "SELECT count(*) FROM leads") == [(0,)]
    with connect_serving(tmp_path / "serving.duckdb", [str(p) for p in snapshots]) as con:
        assert con.execute("SELECT count(*) FROM dtc_events").fetchall() == [(2,)]
        assert con.execute("SELECT vehicle_id, state FROM leads").fetchall() == [
            (deployment.vehicle, "sent")]

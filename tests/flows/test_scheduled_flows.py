"""Every scheduled flow under Prefect's test harness, on a small serving store.

Each flow runs twice: the second run must add no row, lead, outbox row or CRM delivery.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flow_fixtures import N_DAYS, Stores, last_day, seed_dealer_data
from synth_fleet import START, day

from flows.scheduled.campaigns import campaigns_flow
from flows.scheduled.delivery import deliver_leads_flow
from flows.scheduled.export import export_cold_flow
from flows.scheduled.features import backfill_flow, features_flow
from flows.scheduled.score import score_and_advise_flow
from flows.scheduled.train import train_flow
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store import connection as store
from pipeline.store.serving import connect_serving

COUNTS = {
    "daily_features": "SELECT count(*) FROM daily_features",
    "scores": "SELECT count(*) FROM scores",
    "leads": "SELECT count(*) FROM leads",
    "outbox": "SELECT count(*) FROM outbox",
    "delivered": "SELECT count(*) FROM outbox WHERE status = 'delivered'",
    "contacts": "SELECT count(*) FROM campaign_contacts",
    "models": "SELECT count(*) FROM model_registry",
}
NOW = dt.datetime.combine(day(N_DAYS), dt.time(8), tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def failed_cars_stay_advisable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic cars stop reporting when their part fails, weeks before NOW: allow
    evidence that old, else their leads are held as stale (evidence_max_age_days)."""
    monkeypatch.setenv("FLEETCARE_PIPELINE__EVIDENCE_MAX_AGE_DAYS", "60")


def counts(stores: Stores) -> dict[str, int]:
    """Row counts of the serving store's tables the flows write."""
    with connect_serving(stores.serving, stores.snapshot) as con:
        return {k: int(con.execute(sql).fetchall()[0][0]) for k, sql in COUNTS.items()}


def paths(stores: Stores) -> dict[str, Any]:
    return {"serving_path": stores.serving, "snapshot_path": stores.snapshot}


def train(stores: Stores) -> None:
    seed_dealer_data(stores)
    reports = train_flow(**paths(stores), horizon_days=30, seed=0)
    assert any(r["promoted"] for r in reports)


def test_train_features_score_advise_deliver_twice_duplicates_nothing(
        stores: Stores, crm_secret: str, prefect_harness: None) -> None:
    train(stores)
    first = features_flow(**paths(stores), days=7)
    assert first["end"] == last_day().isoformat() and first["rows"] > 0
    assert features_flow(**paths(stores), days=7) == first
    advised = score_and_advise_flow(**paths(stores), now=NOW)
    assert advised["scored"] > 0 and advised["advice"]["new"] >= 2
    after_one = counts(stores)
    again = score_and_advise_flow(**paths(stores), now=NOW)
    assert again["advice"]["new"] == 0
    assert counts(stores) == after_one
    assert after_one["daily_features"] == first["rows"]
    with CrmReceiver(crm_secret) as crm:
        sent = deliver_leads_flow(**paths(stores), crm_url=crm.url)
        assert sent["delivery"]["delivered"] == after_one["outbox"] == crm.received_count
        resent = deliver_leads_flow(**paths(stores), crm_url=crm.url)
        assert resent["delivery"] == {"delivered": 0, "retrying": 0, "dead": 0}
        assert crm.received_count == after_one["outbox"]
        vehicles = {lead["vehicle"]["vehicle_id"] for lead in crm.leads()}
    assert {"ok0", "brk0"} <= vehicles  # the urgent lead from ingest, and a scored one
    assert counts(stores)["delivered"] == after_one["outbox"]


def test_backfill_and_campaigns_twice_write_the_same_rows(
        stores: Stores, prefect_harness: None) -> None:
    train(stores)
    start, end = day(N_DAYS - 5).isoformat(), last_day().isoformat()
    first = backfill_flow(start, end, **paths(stores))
    assert first["days_scored"] == 5 and first["score_rows"] > 0
    assert backfill_flow(start, end, **paths(stores)) == first
    with connect_serving(stores.serving, stores.snapshot) as con:
        con.execute("INSERT INTO region_forecasts VALUES ('north', ?, -8.0)",
                    [day(N_DAYS + 3)])
    contacted = campaigns_flow(**paths(stores), now=NOW)
    after_one = counts(stores)
    assert "ice0" in contacted[0]["contacted"]  # its 12 V battery was failing
    assert campaigns_flow(**paths(stores), now=NOW)[0]["contacted"] == ()
    assert counts(stores) == after_one
    assert after_one["scores"] == first["score_rows"]


def test_export_cold_moves_each_row_once(stores: Stores, prefect_harness: None) -> None:
    with store.connect_readonly(stores.landing) as con:
        total = int(con.execute("SELECT count(*) FROM telemetry").fetchall()[0][0])
    first = export_cold_flow(stores.landing, stores.export_dir,
                             older_than_days=(dt.datetime.now(dt.UTC) - START).days - 40,
                             snapshot_path=stores.snapshot)
    assert 0 < first["rows"] < total and first["snapshot"] == stores.snapshot
    again = export_cold_flow(stores.landing, stores.export_dir,
                             older_than_days=(dt.datetime.now(dt.UTC) - START).days - 40)
    assert again["rows"] == 0
    with connect_serving(stores.serving, stores.snapshot, stores.export_dir) as con:
        assert int(con.execute("SELECT count(*) FROM telemetry").fetchall()[0][0]) == total


def test_export_cold_while_ingest_holds_the_store_names_the_fix(
        stores: Stores, prefect_harness: None) -> None:
    from test_serving import hold_lock, release

    holder = hold_lock(stores.landing)
    try:
        state = export_cold_flow(stores.landing, stores.export_dir, return_state=True)
    finally:
        release(holder)
    assert state.is_failed()
    with pytest.raises(Exception, match="give it --export-dir and --snapshot"):
        state.result()

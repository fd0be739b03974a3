"""The serving store reads ``vehicle_info`` through the landing snapshot, like the other
landing tables, so the flows' VIN check sees what ingest landed."""

from __future__ import annotations

from pathlib import Path

from edge.wire import contract
from pipeline.fleet.vin_check import vin_mismatches
from pipeline.ingest.landing import InboundMessage, land
from pipeline.leads.holds import HoldReason, hold_reasons
from pipeline.store import connection as store
from pipeline.store import export
from pipeline.store.serving import connect_serving

T0 = 1_767_225_600.0
REGISTERED = "WVWZZZ1JZXW000001"
ON_BUS = "1L06130RELP969468"


def _landing(tmp_path: Path, *, without_vehicle_info: bool = False) -> Path:
    """A landing store with one vehicle and its VIN report, and its snapshot."""
    landing, snapshot = tmp_path / "landing.duckdb", tmp_path / "snapshot.duckdb"
    with store.connect(landing) as con:
        con.execute("INSERT INTO vehicles (vehicle_id, model, region) VALUES"
                    " ('V1', 'Aurora EV', 'north')")
        info = contract.VehicleInfo("i1", "V1", T0, ON_BUS, "j1939_feec", "0.4.0")
        land(con, [InboundMessage(contract.vehicle_info_topic("V1"), contract.encode(info), T0)])
        if without_vehicle_info:  # a snapshot written by an ingest from before migration 012
            con.execute("DROP TABLE vehicle_info")
        export.write_snapshot(con, snapshot)
    return snapshot


def test_the_flows_see_the_landed_vin_and_hold_the_mismatched_vehicle(tmp_path: Path) -> None:
    snapshot = _landing(tmp_path)
    with connect_serving(tmp_path / "serving.duckdb", snapshot) as con:
        con.execute("UPDATE vehicles SET vin = ? WHERE vehicle_id = 'V1'", [REGISTERED])
        assert con.execute("SELECT vehicle_id, vin FROM vehicle_info").fetchall() == [
            ("V1", ON_BUS)]
        assert con.execute("SELECT count(*) FROM serving.main.vehicle_info").fetchall() == [
            (0,)]  # read through the view, never copied
        assert [m.vehicle_id for m in vin_mismatches(con)] == ["V1"]
        assert hold_reasons(con, ["V1"]) == {"V1": HoldReason.VIN_MISMATCH}


def test_a_snapshot_from_before_vehicle_info_reads_as_no_reports(tmp_path: Path) -> None:
    snapshot = _landing(tmp_path, without_vehicle_info=True)
    with connect_serving(tmp_path / "serving.duckdb", snapshot) as con:
        con.execute("UPDATE vehicles SET vin = ? WHERE vehicle_id = 'V1'", [REGISTERED])
        assert con.execute("SELECT count(*) FROM vehicle_info").fetchall() == [(0,)]
        assert vin_mismatches(con) == []
        assert hold_reasons(con, ["V1"]) == {"V1": HoldReason.NO_CUSTOMER}  # not the VIN
        assert con.execute("SELECT count(*) FROM telemetry").fetchall() == [(0,)]

"""Ingest's register files and the imported register's authority, on real DuckDB files.

Ingest reads ``vehicles.csv`` (the DMS format ``fleetcare fleet import`` reads, or the older
``vehicle_id,model,region``) and ``customers.csv`` with the same parser as the import, whenever
they change; a bad one is refused whole. An imported vehicle keeps its model and region when a
ground-truth record or the serving store's snapshot sync says otherwise.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from edge.sim.masterdata import SimVehicle, write_master_data
from edge.wire import contract
from pipeline.fleet import import_fleet
from pipeline.ingest.admission import FleetFileError, store_loader
from pipeline.ingest.landing import InboundMessage, land
from pipeline.store import connection as store
from pipeline.store import export
from pipeline.store.serving import connect_serving

FLEET = [SimVehicle("REG00000", "Aurora EV", "north"), SimVehicle("REG00001", "Aurora EV",
                                                                    "south")]


def _files(folder: Path, vehicles: list[SimVehicle]) -> dict[str, Path]:
    return write_master_data(folder, vehicles, seed=2, start=dt.date(2026, 4, 1))


def test_ingest_reads_the_dms_files_again_when_they_change(tmp_path: Path) -> None:
    files = _files(tmp_path / "dms", FLEET[:1])
    with store.connect(tmp_path / "landing.duckdb") as con:
        load = store_loader(con, files["vehicles"], files["customers"])
        assert load() == {"REG00000"}
        assert con.execute("SELECT vehicle_id, customer_id, vin IS NOT NULL, imported_at IS NOT"
                           " NULL FROM vehicles").fetchall() == [
            ("REG00000", "cust-REG00000", True, True)]
        assert con.execute("SELECT customer_id, contact_consent FROM customers").fetchall() == [
            ("cust-REG00000", True)]
        newer = _files(tmp_path / "newer", FLEET)
        os.replace(newer["vehicles"], files["vehicles"])
        assert load() == {"REG00000", "REG00001"}


def test_a_bad_register_file_is_refused_whole_naming_its_problems(tmp_path: Path) -> None:
    files = _files(tmp_path / "dms", FLEET)
    text = files["vehicles"].read_text(encoding="utf-8").splitlines()
    text[2] = text[2].replace("Aurora EV", "")  # line 3 loses its model
    files["vehicles"].write_text("\n".join(text) + "\n", encoding="utf-8")
    with store.connect(tmp_path / "landing.duckdb") as con:
        with pytest.raises(FleetFileError, match=r"vehicles\.csv:3: model: empty, and it is "
                                                 r"required"):
            store_loader(con, files["vehicles"])()
        assert con.execute("SELECT count(*) FROM vehicles").fetchone() == (0,)


def test_the_older_register_format_still_works(tmp_path: Path) -> None:
    old = tmp_path / "fleet.csv"
    old.write_text("vehicle_id,model,region\nOLD1,Aurora EV,north\n", encoding="utf-8")
    with store.connect(tmp_path / "landing.duckdb") as con:
        assert store_loader(con, old)() == {"OLD1"}


def test_an_imported_vehicle_keeps_its_model_and_region(tmp_path: Path) -> None:
    landing, snapshot = tmp_path / "landing.duckdb", tmp_path / "snapshot.duckdb"
    files = _files(tmp_path / "dms", FLEET)
    with store.connect(landing) as con:
        import_fleet(con, files)
        truth = contract.TruthRecord("t-1", "REG00000", "Borealis ICE", "central", 0.0, 1.0,
                                     [contract.ComponentTruth("brakes", None, 40.0)])
        land(con, [InboundMessage(contract.truth_topic("REG00000"), contract.encode(truth),
                                  1.0)])
        assert con.execute("SELECT model, region FROM vehicles WHERE vehicle_id = 'REG00000'"
                           ).fetchone() == ("Aurora EV", "north")
        con.execute("UPDATE vehicles SET region = 'central' WHERE vehicle_id = 'REG00001'")
        export.write_snapshot(con, snapshot)
    serving = tmp_path / "serving.duckdb"
    with store.connect(serving) as con:
        import_fleet(con, files)
    with connect_serving(serving, snapshot) as con:
        assert con.execute("SELECT region FROM vehicles WHERE vehicle_id = 'REG00001'"
                           ).fetchone() == ("south",)

"""The regions' temperature outlook: written beside the simulator's master data, loaded by
``fleetcare fleet import`` from a folder (a real command in a subprocess, a real DuckDB file)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from edge.sim.masterdata import SimVehicle, write_master_data, write_region_forecasts
from pipeline.store import connection as store
from tests.pipeline.test_fleet_import import fleetcare, summary

FLEET = [SimVehicle("VIN00000", "Aurora EV", "north"), SimVehicle("VIN00001", "Borealis ICE",
                                                                    "south")]
FIRST = dt.date(2026, 1, 1)
DAYS = 20


def _export(folder: Path) -> Path:
    write_master_data(folder, FLEET, seed=3, start=dt.date(2026, 1, 21))
    write_region_forecasts(folder, seed=3, first=FIRST, days=DAYS)
    return folder


def _forecasts(db: Path) -> list[tuple[str, dt.date, float]]:
    with store.connect_readonly(db) as con:
        return [(str(r), d, float(t)) for r, d, t in con.execute(
            "SELECT region, day, min_temp_c FROM region_forecasts ORDER BY region, day"
        ).fetchall()]


def test_the_outlook_covers_the_window_and_30_days_past_it_for_every_region(
        tmp_path: Path) -> None:
    path = write_region_forecasts(tmp_path, seed=3, first=FIRST, days=DAYS)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["region", "day", "min_temp_c"]
    assert {r["region"] for r in rows} == {"north", "central", "south"}
    north = [r for r in rows if r["region"] == "north"]
    assert [r["day"] for r in north] == [(FIRST + dt.timedelta(days=i)).isoformat()
                                         for i in range(DAYS + 30)]
    assert write_region_forecasts(tmp_path / "again", seed=3, first=FIRST,
                                  days=DAYS).read_bytes() == path.read_bytes()


def test_a_folder_import_loads_the_outlook_and_a_re_import_changes_nothing(
        tmp_path: Path) -> None:
    folder, db = _export(tmp_path / "export"), tmp_path / "serving.duckdb"
    first = summary(fleetcare("fleet", "import", "--db", str(db), str(folder)))
    assert first["tables"]["region_forecasts"]["inserted"] == 3 * (DAYS + 30)
    assert first["tables"]["vehicles"]["inserted"] == 2  # the other files of the folder too
    landed = _forecasts(db)
    with (folder / "region_forecasts.csv").open(encoding="utf-8", newline="") as handle:
        written = sorted((r["region"], dt.date.fromisoformat(r["day"]), float(r["min_temp_c"]))
                         for r in csv.DictReader(handle))
    assert landed == written
    again = summary(fleetcare("fleet", "import", "--db", str(db), str(folder)))
    assert again["tables"]["region_forecasts"] == {"inserted": 0, "updated": 0,
                                                   "unchanged": 3 * (DAYS + 30),
                                                   "skipped_forgotten": 0}


def test_a_newer_outlook_updates_its_days(tmp_path: Path) -> None:
    folder, db = _export(tmp_path / "export"), tmp_path / "serving.duckdb"
    summary(fleetcare("fleet", "import", "--db", str(db), str(folder)))
    newer = tmp_path / "newer.csv"
    newer.write_text("region,day,min_temp_c\nnorth,2026-01-05,-21.5\nnorth,2027-03-01,2.0\n",
                     encoding="utf-8")
    result = summary(fleetcare("fleet", "import", "--db", str(db), "--region-forecasts",
                               str(newer)))
    assert result["tables"] == {"region_forecasts": {"inserted": 1, "updated": 1,
                                                     "unchanged": 0, "skipped_forgotten": 0}}
    assert ("north", dt.date(2026, 1, 5), -21.5) in _forecasts(db)


def test_a_bad_outlook_row_is_refused_in_one_line_and_nothing_is_applied(
        tmp_path: Path) -> None:
    folder, db = _export(tmp_path / "export"), tmp_path / "serving.duckdb"
    path = folder / "region_forecasts.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = "north,2026-01-03,cold"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    done = fleetcare("fleet", "import", "--db", str(db), str(folder))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"{path}:4: min_temp_c: 'cold' is not a number" in done.stderr
    assert not db.exists() or _forecasts(db) == []


def test_a_folder_without_any_export_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = fleetcare("fleet", "import", "--db", str(tmp_path / "s.duckdb"),
                     str(tmp_path / "empty"))
    assert done.returncode == 2
    assert "holds none of vehicles.csv" in done.stderr
    assert "Traceback" not in done.stderr


def test_sim_fleet_writes_the_outlook_of_its_window_and_refuses_a_bad_day(
        tmp_path: Path) -> None:
    out = tmp_path / "md"
    written = summary(fleetcare("sim", "fleet", "--vehicles", "3", "--seed", "4", "--start",
                                "2026-03-01", "--window-start", "2026-01-01", "--days", "10",
                                "--out", str(out)))
    with Path(written["region_forecasts"]).open(encoding="utf-8", newline="") as handle:
        days = sorted({r["day"] for r in csv.DictReader(handle)})
    assert days[0] == "2026-01-01" and len(days) == 10 + 30
    done = fleetcare("sim", "fleet", "--window-start", "01/01/2026", "--out", str(out))
    assert done.returncode == 2
    assert "--window-start '01/01/2026' is not a day as YYYY-MM-DD" in done.stderr
    assert "Traceback" not in done.stderr

"""Master data for test stores, through the same door as a real fleet's.

The simulator writes its dealer network (centres, a customer per vehicle, capacity, the price
list) as the CSV files a DMS exports (:func:`edge.sim.masterdata.write_master_data`), and
:func:`pipeline.fleet.import_fleet` imports them, exactly as ``fleetcare sim fleet`` followed
by ``fleetcare fleet import`` would. No test seeds master data any other way.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Collection
from pathlib import Path

import duckdb

from edge.sim.masterdata import SimVehicle, write_master_data
from pipeline.fleet import ImportReport, import_fleet


def import_master_data(con: duckdb.DuckDBPyConnection, *, seed: int = 0,
                       start: dt.date | None = None,
                       only: Collection[str] | None = None) -> ImportReport:
    """Write the simulator's master data for every vehicle the store registers and import it.

    Args:
        con: an open store whose ``vehicles`` table lists the fleet.
        seed: makes VINs, names and free slots reproducible.
        start: first day of the capacity calendar (default: today, UTC).
        only: import just these files (e.g. ``("vehicles", "customers")``, what ingest's
            ``--vehicles`` and ``--customers`` give the landing store), references unchecked
            as ingest does.
    """
    vehicles = [SimVehicle(str(v), str(m), str(r)) for v, m, r in con.execute(
        "SELECT vehicle_id, model, region FROM vehicles ORDER BY vehicle_id").fetchall()]
    with tempfile.TemporaryDirectory(prefix="fleetcare-master-data-") as folder:
        paths = write_master_data(Path(folder), vehicles, seed=seed,
                                  start=start or dt.datetime.now(dt.UTC).date())
        if only is None:
            return import_fleet(con, paths)
        return import_fleet(con, {k: v for k, v in paths.items() if k in only},
                            references=False)

"""The simulated fleet's workshop history, written as the ``repair_orders.csv`` a DMS exports.

Every simulated vehicle goes to a workshop (:class:`edge.sim.wear.HealthModel`): a failure is
repaired by an ``unscheduled`` order opened 0-5 days after it, or the same day as a
``roadside`` breakdown; a routine visit about once a year inspects the brakes
(``inspection``) and replaces pads worn to 90 % (``preventive``). The orders come from the
hidden model alone, with the seed that drives the frames, so they are known without running
a single agent and agree with what ``fleetcare sim run`` puts on the buses. Only orders opened
inside the simulated window are exported: a DMS cannot know tomorrow's visits.

The file is what ``fleetcare service import`` reads; the backend learns its labels from it,
never from the simulator's ground truth.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from edge.sim.masterdata import CATALOGUE, write_csv
from edge.sim.simulator import VehicleSpec, params_of
from edge.sim.wear import HealthModel, WorkshopOrder

COLUMNS: Final = ("order_id", "vehicle_id", "vin", "opened_at", "odometer_km", "component",
                  "operation_code", "kind", "lead_id")
"""The columns of ``repair_orders.csv``, in the documented order (docs/onboarding.md)."""
REPAIR_CODES: Final = {row[0]: row[1] for row in CATALOGUE}
"""The operation per component in the simulator's ``catalogue.csv`` (a repair or replacement)."""
INSPECTION_CODES: Final = {"traction_battery": "HV-BAT-INSP", "lv_battery": "LV-BAT-TEST",
                           "brakes": "BRK-INSP"}
"""Operations of an inspection that replaces nothing."""


def vehicle_orders(spec: VehicleSpec, *, start_ts: float, days: int) -> list[WorkshopOrder]:
    """The orders of one vehicle opened within ``days`` days from ``start_ts``."""
    model = HealthModel(params_of(spec), spec.seed, start_ts)
    for _ in range(days):
        model.step()
    return [o for o in model.orders if o.day < days]


def write_repair_orders(out_dir: Path, specs: Sequence[VehicleSpec], *, start_ts: float,
                        days: int) -> Path:
    """Write ``out_dir/repair_orders.csv`` for the fleet (atomically: beside, then renamed).

    Returns:
        The file's path.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, ...]] = []
    for spec in specs:
        for n, order in enumerate(vehicle_orders(spec, start_ts=start_ts, days=days), 1):
            opened = dt.datetime.fromtimestamp(order.opened_ts, dt.UTC).replace(microsecond=0)
            code = (INSPECTION_CODES if order.kind == "inspection" else REPAIR_CODES)[
                order.component]
            rows.append((f"RO-{spec.vehicle_id}-{n:03d}", spec.vehicle_id, spec.vin or "",
                         opened.isoformat().replace("+00:00", "Z"), f"{order.odometer_km:.1f}",
                         order.component, code, order.kind, ""))
    rows.sort(key=lambda r: (r[3], r[0]))  # by opening time, as a DMS lists them
    return write_csv(out_dir / "repair_orders.csv", COLUMNS, rows)

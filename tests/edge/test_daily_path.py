"""The fast daily path lands what real agents and a real ingest land from the frames.

Two vehicles (an EV whose pack is near its limit, an ICE whose pads are) are simulated through
the whole real path: frames on virtual buses, unmodified agents decoding with the reference
DBC and rules, a broker, :class:`~pipeline.ingest.service.Ingestor` into a DuckDB file. The
store's telemetry and fault codes are then compared with :func:`edge.sim.daily.landed_days`
for the same specs: same days, same timestamps, same values to the DBC's resolution.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from edge.reference import reference_rules
from edge.rules import load_rules
from edge.sim.daily import EVERY_FRAME, LANDED, LandedHistory, landed_days
from edge.sim.fleet import run_fleet
from edge.sim.simulator import VehicleSpec
from edge.sim.vins import simulated_vin
from edge.sim.weather import DAY_S
from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store

pytestmark = [pytest.mark.broker]

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC).timestamp()
DAYS = 12
SPECS = [VehicleSpec("FAST00000", "ev", "north", seed=21, battery_soh=73.8, weather=3,
                     vin=simulated_vin(3, "FAST00000")),
         VehicleSpec("FAST00001", "ice", "central", seed=22, pad_wear=89.5, weather=3,
                     vin=simulated_vin(3, "FAST00001"))]
TS_TOLERANCE_S = 2e-6
"""The store keeps microseconds."""

Rows = dict[tuple[str, int], list[tuple[float, float]]]


def _by_signal_and_day(rows: list[tuple[float, str, float]]) -> Rows:
    grouped: Rows = defaultdict(list)
    for ts, signal, value in sorted(rows):
        grouped[(signal, int((ts - START) // DAY_S))].append((ts, value))
    return grouped


@pytest.fixture(scope="module")
def landed(broker_url: str, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[str, tuple[list[tuple[float, str, float]], list[tuple[object, ...]]]]:
    """Per vehicle: the store's (ts, signal, value) rows and its fault-code events."""
    folder = tmp_path_factory.mktemp("daily-path")
    db_path = folder / "fleet.duckdb"
    with Ingestor(broker_url, db_path, client_id=f"daily-path-{uuid.uuid4().hex[:8]}",
                  flush_interval_s=0.2, require_registered_vehicles=False, rate_limit=None):
        result = run_fleet(SPECS, broker_url, load_rules(reference_rules()), days=DAYS,
                           start_ts=START, spool_dir=Path(folder) / "spool",
                           drain_timeout_s=120.0)
    assert result.messages_undelivered == 0
    out = {}
    with store.connect_readonly(db_path) as con:
        for spec in SPECS:
            telemetry = [(float(ts), str(signal), float(value)) for ts, signal, value in
                         con.execute("SELECT epoch(ts), signal, value FROM telemetry"
                                     " WHERE vehicle_id = ?", [spec.vehicle_id]).fetchall()]
            codes = con.execute("SELECT epoch(ts), code, status, ecu, cleared FROM dtc_events"
                                " WHERE vehicle_id = ? ORDER BY ts, code",
                                [spec.vehicle_id]).fetchall()
            out[spec.vehicle_id] = (telemetry, [tuple(c) for c in codes])
    return out


def _fast(spec: VehicleSpec) -> LandedHistory:
    return landed_days(spec, start_ts=START, days=DAYS)


@pytest.mark.parametrize("spec", SPECS, ids=[s.vehicle_id for s in SPECS])
def test_fast_telemetry_equals_what_ingest_landed(
        spec: VehicleSpec, landed: dict[str, tuple[list[tuple[float, str, float]],
                                                   list[tuple[object, ...]]]]) -> None:
    real_rows, _ = landed[spec.vehicle_id]
    fast = _by_signal_and_day(list(_fast(spec).telemetry))
    assert fast, "the fast path landed nothing"
    names = {signal for signal, _ in fast}
    real = _by_signal_and_day([r for r in real_rows if r[1] in names])
    assert set(real) == set(fast)  # the same signals on the same days (no-data days: none)
    every_frame = {name for (name, _), rows in fast.items() if len(rows) > 1}
    for key, rows in fast.items():
        got = real[key]
        if key[0] in every_frame:
            assert [ts for ts, _ in got] == pytest.approx([ts for ts, _ in rows],
                                                          abs=TS_TOLERANCE_S), key
            assert [v for _, v in got] == pytest.approx([v for _, v in rows], abs=1e-9), key
        else:
            (ts, value), = rows
            assert got[0][0] == pytest.approx(ts, abs=TS_TOLERANCE_S), key
            assert [v for _, v in got] == pytest.approx([value] * len(got), abs=1e-9), key
    assert len(every_frame) == sum(len(LANDED[m]) for m in EVERY_FRAME)
    real_days = {int((ts - START) // DAY_S) for ts, _, _ in real_rows}
    assert real_days == {day for _, day in fast}, "a day without fast rows had real rows"
    assert len(real_days) < DAYS, "no day without data: the test shows nothing about them"


@pytest.mark.parametrize("spec", SPECS, ids=[s.vehicle_id for s in SPECS])
def test_fast_fault_codes_equal_what_ingest_landed(
        spec: VehicleSpec, landed: dict[str, tuple[list[tuple[float, str, float]],
                                                   list[tuple[object, ...]]]]) -> None:
    _, real = landed[spec.vehicle_id]
    fast = _fast(spec).fault_codes
    assert fast, "the near-failure part raised no code"
    assert [c[1:] for c in real] == [c[1:] for c in fast]
    assert [c[0] for c in real] == pytest.approx([c[0] for c in fast], abs=TS_TOLERANCE_S)


def test_the_fast_path_is_deterministic_and_lists_the_workshop_orders() -> None:
    spec = VehicleSpec("FAST00002", "ice", "central", seed=10, pad_wear=95.0, km_per_day=60.0)
    a = landed_days(spec, start_ts=START, days=120)
    b = landed_days(spec, start_ts=START, days=120)
    assert a == b
    assert any(o.component == "brakes" and o.kind in ("unscheduled", "roadside")
               for o in a.orders)

"""Small synthetic fleets in a real DuckDB store, for the pipeline tests.

Each vehicle reports a few samples per signal per day at noon UTC. A component set to fail on
day ``k`` degrades towards its failure threshold on that day; healthy ones drift slowly.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from pipeline.store.connection import connect

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
PAD_SIGNALS = [
    f"Vehicle.Chassis.Axle.Row{r}.Wheel.{s}.Brake.PadWear" for r in (1, 2)
    for s in ("Left", "Right")
]


@dataclass(frozen=True)
class Car:
    """One simulated vehicle: ``fails`` maps component to the day index it fails on."""

    vehicle_id: str
    ev: bool = True
    fails: dict[str, int] = field(default_factory=dict)
    region: str = "north"
    crank_signal: str = "BCM_LowVoltage.CrankMinVoltage"
    """Where its cranking minimum comes from: the BCM's report, or the agent's crank detector
    (``Event.Crank.MinVoltage``)."""


_PREFIX = {"brakes": "brk", "lv_battery": "lv", "traction_battery": "hv"}
EVIDENCE_FAILING = 20
"""Failing vehicles per component in :func:`evidence_fleet`: the quarter held out holds the
5 failures a first model needs to be promoted (pipeline.ml.events.MIN_EVIDENCE_FAILURES)."""


def evidence_fleet(components: tuple[str, ...] = ("brakes", "lv_battery", "traction_battery"),
                   *, healthy: int = 6, first_day: int = 42, spread: int = 30) -> list[Car]:
    """``healthy`` vehicles in three regions, and per component :data:`EVIDENCE_FAILING`
    vehicles failing between ``first_day`` and ``first_day + spread`` (``brk0``, ``lv0``,
    ``hv0``, ... fail first; half of the 12 V ones are ICE cars)."""
    cars = [Car(f"ok{i}", ev=i % 2 == 0, region=("north", "central", "south")[i % 3])
            for i in range(healthy)]
    for comp in components:
        cars += [Car(f"{_PREFIX[comp]}{i}", ev=comp != "lv_battery" or i % 2 == 0,
                     fails={comp: first_day + spread * i // EVIDENCE_FAILING})
                 for i in range(EVIDENCE_FAILING)]
    return cars


def _signals(car: Car, d: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def towards(comp: str, healthy: np.ndarray, at_fail: float, span: float) -> np.ndarray:
        fd = car.fails.get(comp)
        if fd is None:
            return healthy
        return np.where(d > fd - span, at_fail + (fd - d) * (healthy[0] - at_fail) / span,
                        healthy)

    sig: dict[str, np.ndarray] = {
        "Vehicle.TraveledDistance": rng.uniform(5_000, 60_000) + rng.uniform(25, 70) * d,
        "Vehicle.Exterior.AirTemperature": 8 + rng.normal(0, 1, d.size),
        "Vehicle.LowVoltageBattery.CurrentVoltage": 12.6 + rng.normal(0, 0.02, d.size),
        car.crank_signal: towards("lv_battery", 10.8 - 0.001 * d, 9.4, 45)
        + rng.normal(0, 0.03, d.size),
    }
    wear = towards("brakes", 30 + 0.05 * d, 100.0, 40)
    for i, name in enumerate(PAD_SIGNALS):
        sig[name] = wear - i + rng.normal(0, 0.2, d.size)
    if car.ev:
        sig[SOH] = towards("traction_battery", 96 - 0.005 * d, 70.0, 45) + rng.normal(
            0, 0.1, d.size)
        sig["Vehicle.Powertrain.TractionBattery.CellVoltage.Max"] = np.full(d.size, 4.10)
        sig["Vehicle.Powertrain.TractionBattery.CellVoltage.Min"] = 4.10 - towards(
            "traction_battery", np.full(d.size, 0.02), 0.3, 45)
        sig["Vehicle.Powertrain.TractionBattery.Temperature.Max"] = 28 + rng.normal(0, 1, d.size)
        sig["BMS_Health.InsulationResistance"] = np.full(d.size, 800.0)
    return sig


SOH = "Vehicle.Powertrain.TractionBattery.StateOfHealth"


def telemetry_frame(car: Car, days: range, samples: int = 3, seed: int = 0) -> pl.DataFrame:
    """Telemetry rows for ``car`` on the given day indexes (``samples`` per signal per day)."""
    rng = np.random.default_rng([seed, sum(car.vehicle_id.encode())])
    d = np.repeat(np.array(list(days), dtype=float), samples)
    secs = np.tile(np.arange(samples), len(days))
    ts = [START + dt.timedelta(days=float(x), hours=12, seconds=int(s))
          for x, s in zip(d, secs, strict=True)]
    parts = [
        pl.DataFrame({"vehicle_id": car.vehicle_id, "ts": ts, "signal": name, "value": values,
                      "msg_id": f"{car.vehicle_id}-msg"})
        for name, values in _signals(car, d, rng).items()
    ]
    return pl.concat(parts).with_columns(pl.col("ts").dt.convert_time_zone("UTC"))


def add_telemetry(con: duckdb.DuckDBPyConnection, car: Car, days: range) -> None:
    """Append ``car``'s telemetry for ``days`` to the store."""
    frame = telemetry_frame(car, days)
    con.register("_synth", frame)
    con.execute("INSERT INTO telemetry SELECT vehicle_id, ts, signal, value, msg_id FROM _synth")
    con.unregister("_synth")


def add_dtc(con: duckdb.DuckDBPyConnection, vehicle_id: str, day: int, code: str,
            *, cleared: bool = False, status: str = "stored") -> None:
    """One fault-code event on day index ``day`` at 12:00 UTC."""
    ts = START + dt.timedelta(days=day, hours=12)
    con.execute(
        "INSERT INTO dtc_events (vehicle_id, ts, code, status, ecu, source, cleared, msg_id)"
        " VALUES (?, ?, ?, ?, 'ECU', 'can', ?, 'm')",
        [vehicle_id, ts, code, status, cleared],
    )


def build_store(path: Path, cars: list[Car], n_days: int) -> duckdb.DuckDBPyConnection:
    """A migrated store holding ``cars``' telemetry for days 0..n_days-1, vehicles, truth and
    one repair order per failure."""
    con = connect(path)
    end = START + dt.timedelta(days=n_days)
    for car in cars:
        last = min([n_days, *(f + 1 for f in car.fails.values())])
        add_telemetry(con, car, range(last))
        model = "EV-1" if car.ev else "ICE-1"
        con.execute("INSERT INTO vehicles (vehicle_id, model, region) VALUES (?, ?, ?)",
                    [car.vehicle_id, model, car.region])
        comps = ["traction_battery", "lv_battery", "brakes"] if car.ev else [
            "lv_battery", "brakes"]
        for comp in comps:
            fd = car.fails.get(comp)
            fts = None if fd is None else START + dt.timedelta(days=fd, hours=18)
            con.execute("INSERT INTO ground_truth VALUES (?, ?, ?, 50.0, ?, ?, 'm')",
                        [car.vehicle_id, comp, fts, START, end])
            if fd is not None:
                add_repair_order(con, car.vehicle_id, comp, fd)
    return con


def add_repair_order(con: duckdb.DuckDBPyConnection, vehicle_id: str, component: str,
                     day: int, kind: str = "unscheduled") -> None:
    """The workshop's repair order on day index ``day`` at 18:00 UTC (training's labels).

    A failure is opened the day it happens, as a workshop records a car towed in that day.
    """
    opened = START + dt.timedelta(days=day, hours=18)
    con.execute("INSERT INTO repair_orders VALUES (?, ?, ?, NULL, ?, ?, ?, NULL, now())",
                [f"RO-{vehicle_id}-{component}-{day}-{kind}", vehicle_id, opened, component,
                 f"{component.upper()}-{kind.upper()}", kind])


def day(i: int) -> dt.date:
    """The calendar date of day index ``i``."""
    return (START + dt.timedelta(days=i)).date()


def register_stand_in_models(con: duckdb.DuckDBPyConnection, threshold: float = 0.5,
                             horizon_days: int = 30) -> None:
    """A promoted model per component with no artifact: advice reads only a model's id,
    threshold and horizon, so tests that write scores themselves need no training."""
    for comp in ("traction_battery", "lv_battery", "brakes"):
        con.execute(
            "INSERT INTO model_registry (model_id, component, features, metrics, artifact,"
            " promoted) VALUES (?, ?, [], ?, ''::BLOB, true)",
            [f"m-{comp}", comp, json.dumps({"threshold": threshold,
                                            "horizon_days": horizon_days})])

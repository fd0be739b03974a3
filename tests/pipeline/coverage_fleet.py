"""A fleet some of whose vehicles never send (or stopped sending) signals a model needs.

An ICE car without a traction pack, a car without rear pad-wear sensors, one without 12 V
voltage, one without air temperature (optional), one whose 12 V voltage stopped long ago
(``oldcrank``), one without cranking minima (optional for the 12 V model),
and one registered vehicle that sent nothing. The three models are fitted on the full fleet's
features (labels from simple thresholds) before the signals are dropped, and registered and
promoted like trained ones.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import polars as pl
from synth_fleet import PAD_SIGNALS, START, Car, build_store, day

from pipeline.features.daily import build_daily_features, model_features
from pipeline.features.inputs import (
    AIR_TEMP,
    BCM_CRANK_DIP,
    CELL_TEMP_MAX,
    CELL_VOLTAGE_MAX,
    CELL_VOLTAGE_MIN,
    LV_VOLTAGE,
    SOH,
)
from pipeline.ml import registry
from pipeline.ml.training import estimator_for

N_DAYS = 100
LAST = day(N_DAYS - 1)
REAR_PADS = tuple(s for s in PAD_SIGNALS if ".Row2." in s)
TRACTION = (CELL_VOLTAGE_MAX, CELL_VOLTAGE_MIN, SOH, CELL_TEMP_MAX)
LABELS = {"brakes": pl.col("pad_wear_max") > 60, "lv_battery": pl.col("crank_dip_min") < 10.75,
          "traction_battery": pl.col("soh") < 95.5}


def fleet() -> list[Car]:
    """The cars with telemetry (``silent`` is only registered)."""
    cars = [Car(v) for v in ("full", "full2", "nolv", "noair", "oldcrank", "nocrank")]
    cars += [Car(v, ev=False) for v in ("ice", "ice2")]
    cars += [Car(v, fails={"brakes": N_DAYS - 1}) for v in ("brk", "norear")]
    return cars


def _fit_and_promote(con: duckdb.DuckDBPyConnection) -> None:
    features = build_daily_features(con)
    for component, label in LABELS.items():
        names = model_features(component)
        rows = features.filter(label.is_not_null())
        model = estimator_for(component, names, 0).fit(
            rows.select(pl.col(names).cast(pl.Float64)), rows.select(label).to_series().to_numpy(),
            groups=rows["vehicle_id"].to_numpy())
        new = registry.NewModel(f"m-{component}", component, names,
                                {"horizon_days": 30, "threshold": float(model.threshold_)},
                                (None, None), [], [], {}, "test")
        registry.save_model(con, new, model)
        registry.set_promoted(con, new.model_id, {"promoted": True, "reason": "test"})


def _drop(con: duckdb.DuckDBPyConnection, vehicle: str, signals: tuple[str, ...],
          from_day: int = 0) -> None:
    con.execute("DELETE FROM telemetry WHERE vehicle_id = ? AND list_contains(?, signal)"
                " AND ts >= ?", [vehicle, list(signals), START + dt.timedelta(days=from_day)])


def build_coverage_store(path: Path) -> Path:
    """The fleet's one-file store at ``path``, closed (so a subprocess may open it)."""
    con = build_store(path, fleet(), N_DAYS)
    _fit_and_promote(con)
    _drop(con, "norear", REAR_PADS)
    _drop(con, "nolv", (LV_VOLTAGE,))
    _drop(con, "noair", (AIR_TEMP,))
    _drop(con, "oldcrank", (LV_VOLTAGE,), from_day=5)
    _drop(con, "nocrank", (BCM_CRANK_DIP,))
    con.execute("INSERT INTO vehicles (vehicle_id, model, region)"
                " VALUES ('silent', 'EV-1', 'north')")
    con.close()
    return path

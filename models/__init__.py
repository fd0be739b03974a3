"""fleetcare models: scikit-learn fault-warning estimators and their evaluation.

Knows nothing of MQTT, DuckDB or Prefect: it takes arrays and DataFrames.
"""

from models._battery_life import (
    BatteryLifeForecaster,
    LifeForecast,
    crossing_index,
    snapshot_features,
    training_snapshots,
)
from models._boosted import BoostedWarningClassifier, platt_scaling
from models._brake_life import BrakePadLifeForecaster, PadLife, pad_life
from models._fault_warning import FaultWarningClassifier, cost_optimal_threshold
from models._no_start import NoStartRiskClassifier
from models._transforms import SignedLog1p

__all__ = [
    "BatteryLifeForecaster",
    "BoostedWarningClassifier",
    "BrakePadLifeForecaster",
    "FaultWarningClassifier",
    "LifeForecast",
    "NoStartRiskClassifier",
    "PadLife",
    "SignedLog1p",
    "cost_optimal_threshold",
    "crossing_index",
    "pad_life",
    "platt_scaling",
    "snapshot_features",
    "training_snapshots",
]

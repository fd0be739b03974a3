"""Training, hold-out evaluation, the model registry, promotion, fleet scoring and which
model can score which vehicle (coverage).

The estimators themselves live in :mod:`models`, which knows nothing of the store; this
package feeds them the store's features and keeps what they produce.
"""

from pipeline.errors import NotEnoughDataError
from pipeline.ml.backfill import backfill
from pipeline.ml.coverage import (
    FleetCoverage,
    ModelCoverage,
    VehicleCoverage,
    fleet_coverage,
    vehicle_coverage,
)
from pipeline.ml.registry import UnknownModelError
from pipeline.ml.scoring import (
    TOP_FEATURES,
    ComponentScoring,
    ScoringReport,
    SkippedVehicles,
    merge_reports,
    score_fleet,
)
from pipeline.ml.tabular import BadTableError, read_history_csv, read_labelled_csv
from pipeline.ml.training import (
    UntrustedArtifactError,
    estimator_for,
    load_model,
    train_and_register,
)

__all__ = [
    "TOP_FEATURES",
    "BadTableError",
    "ComponentScoring",
    "FleetCoverage",
    "ModelCoverage",
    "NotEnoughDataError",
    "ScoringReport",
    "SkippedVehicles",
    "UnknownModelError",
    "UntrustedArtifactError",
    "VehicleCoverage",
    "backfill",
    "estimator_for",
    "fleet_coverage",
    "load_model",
    "merge_reports",
    "read_history_csv",
    "read_labelled_csv",
    "score_fleet",
    "train_and_register",
    "vehicle_coverage",
]

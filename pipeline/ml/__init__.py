"""Training, hold-out evaluation, the model registry, promotion and fleet scoring.

The estimators themselves live in :mod:`models`, which knows nothing of the store; this
package feeds them the store's features and keeps what they produce.
"""

from pipeline.errors import NotEnoughDataError
from pipeline.ml.backfill import backfill
from pipeline.ml.registry import UnknownModelError
from pipeline.ml.scoring import TOP_FEATURES, score_fleet
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
    "NotEnoughDataError",
    "UnknownModelError",
    "UntrustedArtifactError",
    "backfill",
    "estimator_for",
    "load_model",
    "read_history_csv",
    "read_labelled_csv",
    "score_fleet",
    "train_and_register",
]

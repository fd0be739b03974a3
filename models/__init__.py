"""fleetcare models: scikit-learn fault-warning estimators and their evaluation.

Knows nothing of MQTT, DuckDB or Prefect: it takes arrays and DataFrames.
"""

from models._fault_warning import FaultWarningClassifier, cost_optimal_threshold

__all__ = ["FaultWarningClassifier", "cost_optimal_threshold"]

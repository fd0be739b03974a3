"""fleetcare models: scikit-learn fault-warning estimators and their evaluation.

Knows nothing of MQTT, DuckDB or Prefect: it takes arrays and DataFrames.
"""

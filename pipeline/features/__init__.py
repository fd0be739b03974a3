"""Daily point-in-time features per vehicle (polars over DuckDB), their materialised table,
the labels they train on, the signals each feature is computed from, the backend's
fault-code catalogue and which fault codes are active (a repair clears its component's).
"""

from pipeline.features.active_codes import CLEARING_KINDS, active_fault_codes
from pipeline.features.daily import (
    COMPONENT_FEATURES,
    CONTEXT_FEATURES,
    LOOKBACK_DAYS,
    attach_labels,
    build_daily_features,
    label_column,
    model_features,
)
from pipeline.features.fault_codes import catalog_frame, severity_rank
from pipeline.features.freshness import fresh_days, input_digests
from pipeline.features.inputs import (
    FEATURE_SIGNALS,
    OPTIONAL_SIGNALS,
    ModelInputs,
    UnknownFeatureError,
    alternatives,
    any_of,
    component_inputs,
    model_inputs,
)
from pipeline.features.labels import HORIZON_DAYS, HorizonError, HorizonOverride, horizons
from pipeline.features.materialised import (
    LONG_SCHEMA,
    DayRange,
    compute_daily_features,
    latest_telemetry_day,
    materialise_daily_features,
    recent_days,
    write_daily_features,
)

__all__ = [
    "CLEARING_KINDS",
    "COMPONENT_FEATURES",
    "CONTEXT_FEATURES",
    "FEATURE_SIGNALS",
    "HORIZON_DAYS",
    "LONG_SCHEMA",
    "LOOKBACK_DAYS",
    "OPTIONAL_SIGNALS",
    "DayRange",
    "HorizonError",
    "HorizonOverride",
    "ModelInputs",
    "UnknownFeatureError",
    "active_fault_codes",
    "alternatives",
    "any_of",
    "attach_labels",
    "build_daily_features",
    "catalog_frame",
    "component_inputs",
    "compute_daily_features",
    "fresh_days",
    "horizons",
    "input_digests",
    "label_column",
    "latest_telemetry_day",
    "materialise_daily_features",
    "model_features",
    "model_inputs",
    "recent_days",
    "severity_rank",
    "write_daily_features",
]

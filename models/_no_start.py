"""12 V no-start risk: will the starter battery fail to crank the engine within the horizon?

A lead-acid battery ages by losing capacity and gaining internal resistance; both show as a
deeper voltage dip while cranking, and cold makes it worse. The physically telling number is
therefore not today's dip alone but where the dip is heading: today's daily minimum plus its
trend over the horizon, against the voltage below which starters and ECUs drop out. That
projected margin is added as a derived column ahead of the cost-tuned logistic model, so a
service advisor reads "crank margin at horizon" among the reasons for a warning.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from models._fault_warning import FaultWarningClassifier
from models._transforms import SignedLog1p

MARGIN_FEATURE = "crank_margin_at_horizon"
"""Name of the derived column: projected cranking dip minus the drop-out voltage (V)."""


def _append_margin(X: NDArray[Any], dip: int, trend: int, horizon: float,
                   dropout: float) -> NDArray[np.float64]:
    """X plus one column: ``X[:, dip] + horizon * X[:, trend] - dropout`` (NaN propagates)."""
    Xf = np.asarray(X, dtype=float)
    if max(dip, trend) >= Xf.shape[1]:
        return Xf
    margin = Xf[:, dip] + horizon * np.nan_to_num(Xf[:, trend]) - dropout
    return np.column_stack([Xf, margin])


class NoStartRiskClassifier(FaultWarningClassifier):
    """Cost-tuned no-start warning from cranking features, with a projected crank margin.

    Args:
        dip_column: index of the daily minimum cranking voltage (V) in X.
        trend_column: index of its trend (V per day) in X.
        horizon_days: how far ahead the margin is projected.
        dropout_voltage: cranking voltage below which a start is at risk (9.6 V is the
            usual load-test pass limit for a 12 V battery).
        C, class_weight, cost_fp, cost_fn, cv, random_state, robust: as in
            FaultWarningClassifier (the robust transform sees the derived margin too).

    Attributes:
        classes_, threshold_, pipeline_, n_features_in_, feature_names_in_: as in
            FaultWarningClassifier; ``pipeline_`` starts with the margin step.
    """

    def __init__(
        self,
        dip_column: int = 0,
        trend_column: int = 1,
        horizon_days: float = 30.0,
        dropout_voltage: float = 9.6,
        C: float = 1.0,
        class_weight: str | dict[Any, float] | None = "balanced",
        cost_fp: float = 1.0,
        cost_fn: float = 10.0,
        cv: int = 3,
        random_state: int | None = 0,
        robust: bool = False,
    ) -> None:
        super().__init__(C=C, class_weight=class_weight, cost_fp=cost_fp, cost_fn=cost_fn,
                         cv=cv, random_state=random_state, robust=robust)
        self.dip_column = dip_column
        self.trend_column = trend_column
        self.horizon_days = horizon_days
        self.dropout_voltage = dropout_voltage

    def _new_pipeline(self) -> Pipeline:
        margin = FunctionTransformer(_append_margin, kw_args={
            "dip": self.dip_column, "trend": self.trend_column,
            "horizon": self.horizon_days, "dropout": self.dropout_voltage})
        return make_pipeline(
            margin,
            *([SignedLog1p()] if self.robust else []),
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=1000),
        )

    def design_names(self) -> list[str]:
        """Input names, then the derived crank margin when both of its inputs exist."""
        names = super().design_names()
        if max(self.dip_column, self.trend_column) < self.n_features_in_:
            names.append(MARGIN_FEATURE)
        return names

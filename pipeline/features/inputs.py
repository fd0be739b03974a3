"""Which telemetry signals each feature is computed from, and so what a model needs to score.

A model sees features, but a vehicle sends signals: whether a model can score a vehicle is a
question about the vehicle's signals. :data:`FEATURE_SIGNALS` says, for every feature
:mod:`pipeline.features.daily` builds, which VSS signals (or raw ``<Message>.<Signal>`` names
where VSS has none) its value is computed from; the fault-code features read ``dtc_events``
and no signal. It must follow ``daily_sql.py`` and ``daily.py``; a test drops each signal
from a store and checks that only the features declared to read it change.

An input is one signal, or **alternatives**: signals that measure the same quantity on
different buses, any one of which gives the feature its value (written ``A|B``, see
:func:`any_of`). The cranking minimum is one: a reference-vehicle BCM reports it itself
(``BCM_LowVoltage.CrankMinVoltage``), and on any other bus carrying the 12 V voltage and the
engine speed the agent's crank detector measures it (``Event.Crank.MinVoltage``, see
``edge/cranking.py``).

A model's inputs split in two, per component (:data:`OPTIONAL_SIGNALS`):

* **required** inputs: without a reading of every one of them the model does not score the
  vehicle (its score would come from the training median, not from the vehicle);
* **optional** inputs: they only refine a score, and the features they feed are imputed when
  a vehicle does not send them. Air temperature is climate context for every model; distance
  is usage context for the battery models (but per-kilometre wear is half of what the brake
  model reads); few packs report insulation resistance; speed only adds braking energy to a
  pad-wear measurement; and a crank is seen only where the bus carries the 12 V voltage fast
  enough around a start from rest (an ECU polled over OBD-II rarely answers while the starter
  turns), whereas the 12 V voltage itself, on every bus that carries it, describes the
  battery and its charging.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge.wire.contract import COMPONENTS
from pipeline.errors import TerminalPipelineError
from pipeline.features.daily import model_features
from pipeline.features.daily_sql import PAD_WEAR, SPEED

SOH: Final = "Vehicle.Powertrain.TractionBattery.StateOfHealth"
CELL_VOLTAGE_MAX: Final = "Vehicle.Powertrain.TractionBattery.CellVoltage.Max"
CELL_VOLTAGE_MIN: Final = "Vehicle.Powertrain.TractionBattery.CellVoltage.Min"
CELL_TEMP_MAX: Final = "Vehicle.Powertrain.TractionBattery.Temperature.Max"
INSULATION: Final = "BMS_Health.InsulationResistance"
ANY_OF: Final = "|"
"""Separates alternative signals in one input (no signal name contains it)."""
BCM_CRANK_DIP: Final = "BCM_LowVoltage.CrankMinVoltage"
AGENT_CRANK_DIP: Final = "Event.Crank.MinVoltage"
LV_VOLTAGE: Final = "Vehicle.LowVoltageBattery.CurrentVoltage"
ODOMETER: Final = "Vehicle.TraveledDistance"
AIR_TEMP: Final = "Vehicle.Exterior.AirTemperature"

_PADS: Final = tuple(PAD_WEAR.values())


def any_of(*signals: str) -> str:
    """One input satisfied by a reading of any of ``signals`` (sorted, so it compares equal)."""
    return ANY_OF.join(sorted(signals))


def alternatives(signal_input: str) -> tuple[str, ...]:
    """The signals that can satisfy one input (one, unless it was made by :func:`any_of`)."""
    return tuple(signal_input.split(ANY_OF))


CRANK_DIP: Final = any_of(BCM_CRANK_DIP, AGENT_CRANK_DIP)
"""The cranking minimum: reported by the BCM, or measured by the agent's crank detector."""

FEATURE_SIGNALS: Final[dict[str, tuple[str, ...]]] = {
    "soh": (SOH,),
    "soh_slope_14d": (SOH,),
    "soh_days_to_threshold": (SOH,),
    "soh_median_30d": (SOH,),
    "soh_slope_60d": (SOH,),
    "soh_days_to_threshold_60d": (SOH,),
    "cell_voltage_spread": (CELL_VOLTAGE_MAX, CELL_VOLTAGE_MIN),
    "cell_temp_max": (CELL_TEMP_MAX,),
    "cell_temp_mean_30d": (CELL_TEMP_MAX,),
    "hot_days_30d": (CELL_TEMP_MAX,),
    "insulation_resistance_min": (INSULATION,),
    "insulation_resistance_mean_30d": (INSULATION,),
    "cell_voltage_spread_slope_60d": (CELL_VOLTAGE_MAX, CELL_VOLTAGE_MIN),
    "crank_dip_min": (CRANK_DIP,),
    "crank_dip_trend_14d": (CRANK_DIP,),
    "rest_voltage": (LV_VOLTAGE,),
    "rest_voltage_trend_14d": (LV_VOLTAGE,),
    "crank_dip_per_degree_30d": (CRANK_DIP, AIR_TEMP),
    "outlook_min_temp_c": (),
    "crank_dip_at_outlook": (CRANK_DIP, AIR_TEMP),
    "crank_margin_at_outlook": (CRANK_DIP, AIR_TEMP),
    "pad_wear_max": _PADS,
    "pad_wear_rate_per_100km": (*_PADS, ODOMETER),
    "pad_km_to_limit": (*_PADS, ODOMETER),
    "pad_days_to_limit": (*_PADS, ODOMETER),
    "pad_wear_rate_per_100km_60d": (*_PADS, ODOMETER),
    "pad_km_in_stage": (*_PADS, ODOMETER),
    "pad_km_left_60d": (*_PADS, ODOMETER),
    "pad_days_left_60d": (*_PADS, ODOMETER),
    **{name: _PADS for name in ("pad_stage_days", "pad_days_in_stage", "pad_days_left_stage")},
    "pad_km_left_stage": (*_PADS, ODOMETER),
    **{f"pad_wear_{k}": (sig,) for k, sig in PAD_WEAR.items()},
    **{f"pad_wear_rate_per_100km_{k}": (sig, ODOMETER) for k, sig in PAD_WEAR.items()},
    "braking_energy_30d": (SPEED,),
    "pad_wear_per_braking_energy": (*_PADS, SPEED),
    "distance_km": (ODOMETER,),
    "ambient_temp": (AIR_TEMP,),
    "odometer_km": (ODOMETER,),
    **{f"dtc_{kind}__{c}": () for c in COMPONENTS for kind in ("count", "events_30d",
                                                                "age_days")},
}
"""The inputs each feature's value is computed from (empty: from fault codes or the regional
temperature outlook only)."""

OPTIONAL_SIGNALS: Final[dict[str, frozenset[str]]] = {
    "traction_battery": frozenset({INSULATION, AIR_TEMP, ODOMETER}),
    "lv_battery": frozenset({CRANK_DIP, AIR_TEMP, ODOMETER}),
    "brakes": frozenset({SPEED, AIR_TEMP}),
}
"""Per component, the inputs its model scores without (the features they feed are imputed);
the module docstring says why each is optional."""
COMMON_OPTIONAL: Final = frozenset.intersection(*OPTIONAL_SIGNALS.values())
"""What is optional for a feature list of no known component: what every component allows."""


class UnknownFeatureError(TerminalPipelineError):
    """A model reads a feature :data:`FEATURE_SIGNALS` does not know, so its inputs are unknown."""


@dataclass(frozen=True, slots=True)
class ModelInputs:
    """The telemetry inputs a model's features are computed from, sorted.

    Each input is a signal name or alternatives (:func:`any_of`): an input has a reading when
    any of its signals has one.

    Attributes:
        required: every one must have a reading in the scoring window for the model to score
            a vehicle.
        optional: imputed when missing (:data:`OPTIONAL_SIGNALS`).
    """

    required: tuple[str, ...]
    optional: tuple[str, ...]

    @property
    def signals(self) -> tuple[str, ...]:
        """Required and optional inputs together, sorted."""
        return tuple(sorted({*self.required, *self.optional}))

    @property
    def signal_names(self) -> tuple[str, ...]:
        """Every signal that can satisfy an input (alternatives one by one), sorted."""
        return tuple(sorted({s for i in self.signals for s in alternatives(i)}))


def model_inputs(features: list[str] | tuple[str, ...],
                 component: str | None = None) -> ModelInputs:
    """The inputs a model of ``component`` trained on ``features`` reads, split into required
    and optional (:data:`OPTIONAL_SIGNALS` of the component; :data:`COMMON_OPTIONAL` without).

    Raises:
        UnknownFeatureError: a feature is not in :data:`FEATURE_SIGNALS` (declare it there
            when you add it to :mod:`pipeline.features.daily`).
    """
    unknown = [f for f in features if f not in FEATURE_SIGNALS]
    if unknown:
        raise UnknownFeatureError(
            f"features {', '.join(unknown)} have no declared input signals: add them to "
            "pipeline.features.inputs.FEATURE_SIGNALS")
    signals = {s for f in features for s in FEATURE_SIGNALS[f]}
    optional = OPTIONAL_SIGNALS.get(component, COMMON_OPTIONAL) if component else COMMON_OPTIONAL
    return ModelInputs(tuple(sorted(signals - optional)), tuple(sorted(signals & optional)))


def component_inputs(component: str) -> ModelInputs:
    """What today's model of ``component`` reads (its :func:`model_features`)."""
    return model_inputs(model_features(component), component)

"""The words a service advisor reads: what each number means, in which unit, and what to do.

A lead is read by someone on the phone to a customer, not by a data engineer. Every value a
lead quotes therefore carries its unit and a meaning in plain words; values that are not
facts (the days-to-limit cap that stands for "no trend") are left out rather than quoted;
the model's probability becomes a rounded percentage and a word; and one sentence, the
``headline``, says what to do and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

from pipeline.features.daily import HORIZON_CAP_DAYS, PAD_WEAR_LIMIT, SOH_FAILED


@dataclass(frozen=True, slots=True)
class Quantity:
    """What one feature or raw signal is, for people: its meaning and unit."""

    meaning: str
    unit: str | None
    capped: bool = False
    """True for days-to-limit features, whose cap means "no trend", not a date."""


_WHEEL_WORDS: Final = {"fl": "front-left", "fr": "front-right", "rl": "rear-left",
                       "rr": "rear-right"}
_COMPONENT_WORDS: Final = {"traction_battery": "high-voltage battery",
                           "lv_battery": "12 V battery", "brakes": "brakes"}


def component_words(component: str) -> str:
    """A component as an advisor says it ("12 V battery"): the leads', the console's and the
    report's one wording."""
    return _COMPONENT_WORDS.get(component, component.replace("_", " "))


ACTIONS: Final = {"traction_battery": "book a high-voltage battery check",
                  "lv_battery": "book a 12 V battery test", "brakes": "book a pad replacement"}
"""What the headline asks the centre to do, per component (critical leads: roadside help)."""

QUANTITIES: Final[dict[str, Quantity]] = {
    "soh": Quantity("high-voltage battery state of health", "%"),
    "soh_slope_14d": Quantity("change of battery health a day (14-day trend)", "% per day"),
    "soh_days_to_threshold": Quantity(
        f"days until battery health falls to {SOH_FAILED:.0f} % at its 14-day trend", "days",
        capped=True),
    "soh_median_30d": Quantity("battery health, median of 30 days", "%"),
    "soh_slope_60d": Quantity("change of battery health a day (60-day trend)", "% per day"),
    "soh_days_to_threshold_60d": Quantity(
        f"days until battery health falls to {SOH_FAILED:.0f} % at its 60-day trend", "days",
        capped=True),
    "insulation_resistance_mean_30d": Quantity("insulation resistance, mean of 30 days", "kΩ"),
    "cell_voltage_spread_slope_60d": Quantity(
        "change of the cell voltage gap a day (60-day trend)", "V per day"),
    "cell_voltage_spread": Quantity("gap between the highest and lowest cell voltage", "V"),
    "cell_temp_max": Quantity("hottest battery cell of the day", "°C"),
    "cell_temp_mean_30d": Quantity("hottest cell, averaged over 30 days", "°C"),
    "hot_days_30d": Quantity("days in the last 30 with a cell at 40 °C or more", "days"),
    "insulation_resistance_min": Quantity("lowest insulation resistance of the day", "kΩ"),
    "crank_dip_min": Quantity("lowest 12 V voltage while starting the engine", "V"),
    "crank_dip_trend_14d": Quantity("change of the starting voltage a day (14-day trend)",
                                    "V per day"),
    "rest_voltage": Quantity("12 V battery voltage (median of the day)", "V"),
    "crank_dip_per_degree_30d": Quantity(
        "how much the starting voltage drops per degree colder (30 days)", "V per °C"),
    "outlook_min_temp_c": Quantity("coldest morning forecast for the region in 30 days", "°C"),
    "crank_dip_at_outlook": Quantity(
        "starting voltage expected on the coldest forecast morning", "V"),
    "rest_voltage_trend_14d": Quantity("change of the 12 V voltage a day (14-day trend)",
                                       "V per day"),
    "pad_wear_max": Quantity(
        f"wear of the most worn brake pad ({PAD_WEAR_LIMIT:.0f} % is the wear limit)", "%"),
    "pad_wear_rate_per_100km": Quantity("wear of the most worn pad per 100 km", "% per 100 km"),
    "pad_km_to_limit": Quantity("distance left until the most worn pad reaches its limit", "km"),
    "pad_wear_rate_per_100km_60d": Quantity("wear of the most worn pad per 100 km (60 days)",
                                            "% per 100 km"),
    "pad_km_in_stage": Quantity("distance since the pad sensor last moved", "km"),
    "pad_km_left_60d": Quantity(
        "distance left until the most worn pad reaches its limit (60-day wear rate)", "km"),
    "pad_days_left_60d": Quantity(
        "days left until the most worn pad reaches its limit (60-day wear rate)", "days",
        capped=True),
    "pad_days_to_limit": Quantity(
        "days left until the most worn pad reaches its limit at this car's daily distance",
        "days", capped=True),
    **{f"pad_wear_{k}": Quantity(f"{w} pad wear ({PAD_WEAR_LIMIT:.0f} % is the wear limit)",
                                 "%") for k, w in _WHEEL_WORDS.items()},
    **{f"pad_wear_rate_per_100km_{k}": Quantity(f"{w} pad wear per 100 km", "% per 100 km")
       for k, w in _WHEEL_WORDS.items()},
    "braking_energy_30d": Quantity("braking energy over 30 days (per kg of car)", "kJ/kg"),
    "pad_wear_per_braking_energy": Quantity("pad wear per unit of braking energy",
                                            "% per kJ/kg"),
    "distance_km": Quantity("distance driven on the day", "km"),
    "ambient_temp": Quantity("outside air temperature (median of the day)", "°C"),
    "odometer_km": Quantity("odometer", "km"),
    **{f"dtc_events_30d__{c}": Quantity(f"{w} fault-code reports in the last 30 days", None)
       for c, w in _COMPONENT_WORDS.items()},
    **{f"dtc_age_days__{c}": Quantity(f"age of the oldest active {w} fault code", "days")
       for c, w in _COMPONENT_WORDS.items()},
    **{f"dtc_count__{c}": Quantity(f"active {w} fault codes", None)
       for c, w in _COMPONENT_WORDS.items()},
}
"""Every daily feature a lead may quote (:data:`pipeline.features.COMPONENT_FEATURES` and
the context features)."""

_RAW: Final[dict[str, Quantity]] = {
    "Vehicle.Powertrain.TractionBattery.StateOfHealth": QUANTITIES["soh"],
    "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": Quantity(
        "high-voltage battery charge", "%"),
    "Vehicle.Powertrain.TractionBattery.CurrentVoltage": Quantity(
        "high-voltage battery voltage", "V"),
    "Vehicle.Powertrain.TractionBattery.CurrentCurrent": Quantity(
        "high-voltage battery current", "A"),
    "Vehicle.Powertrain.TractionBattery.CellVoltage.Min": Quantity("lowest cell voltage", "V"),
    "Vehicle.Powertrain.TractionBattery.CellVoltage.Max": Quantity("highest cell voltage", "V"),
    "Vehicle.Powertrain.TractionBattery.Temperature.Min": Quantity("coolest battery cell", "°C"),
    "Vehicle.Powertrain.TractionBattery.Temperature.Max": Quantity("hottest battery cell", "°C"),
    "Vehicle.LowVoltageBattery.CurrentVoltage": Quantity("12 V battery voltage", "V"),
    "BMS_Health.InsulationResistance": Quantity("insulation resistance", "kΩ"),
    "BCM_LowVoltage.CrankMinVoltage": QUANTITIES["crank_dip_min"],
    "Vehicle.TraveledDistance": QUANTITIES["odometer_km"],
    "VCU_Motion.Odometer": QUANTITIES["odometer_km"],
    "Vehicle.Exterior.AirTemperature": Quantity("outside air temperature", "°C"),
    "BCM_Ambient.AmbientTemperature": Quantity("outside air temperature", "°C"),
    **{f"Vehicle.Chassis.Axle.{axle}.Wheel.{side}.Brake.PadWear":
       QUANTITIES[f"pad_wear_{k}"]
       for k, (axle, side) in {"fl": ("Row1", "Left"), "fr": ("Row1", "Right"),
                               "rl": ("Row2", "Left"), "rr": ("Row2", "Right")}.items()},
}


def quantity(name: str) -> Quantity:
    """The meaning and unit of a feature or raw signal; for one we do not know, its own name
    in words and no unit (never a guess)."""
    if name in QUANTITIES:
        return QUANTITIES[name]
    if name in _RAW:
        return _RAW[name]
    last = name.rsplit(".", 1)[-1]
    return Quantity(last.replace("_", " "), None)


def is_fact(name: str, value: float) -> bool:
    """False for a value that stands for "no data" rather than a measurement: the cap of a
    days-to-limit feature ("not wearing, or no trend yet"), or a non-finite number."""
    if not math.isfinite(value):
        return False
    return not (quantity(name).capped and value >= HORIZON_CAP_DAYS)


def readable(value: float) -> float:
    """``value`` rounded the way a person quotes it: three significant digits, at most one
    decimal from 10 up and none from 100 up."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    size = abs(value)
    if size >= 100:
        return float(round(value))
    if size >= 10:
        return round(value, 1)
    return float(f"{value:.3g}")


def with_unit(value: float, unit: str | None) -> str:
    """``92 %``, ``11 days``, ``9.4 V``: a value as it reads in a sentence."""
    number = f"{readable(value):g}"
    return f"{number} {unit}" if unit else number


def percent(probability: float) -> int:
    """A probability as a whole percentage from 1 to 99: a model is never certain."""
    return min(99, max(1, round(probability * 100)))


def confidence(probability: float | None, severity: str, *, has_codes: bool,
               campaign: str | None, horizon_days: int | None = None) -> dict[str, Any]:
    """How sure the lead is, as a whole percentage (1 to 99: a model is never certain) and
    a word; for a lead without a model score, what it rests on instead. The text names the
    model's horizon in days (it differs per component: 60 days for wearing parts, 30 for the
    12 V battery), so an advisor reads what the percentage promises."""
    if probability is not None:
        whole = percent(probability)
        level = "high" if whole >= 85 else "medium" if whole >= 60 else "low"
        within = f"{horizon_days} days" if horizon_days else "the horizon"
        return {"percent": whole, "level": level, "basis": "model",
                "text": f"{whole} % ({level}) chance of a failure within {within}"}
    if has_codes:
        return {"percent": None, "level": "high", "basis": "fault_codes",
                "text": f"the car itself reports a {severity} fault code"}
    return {"percent": None, "level": "low", "basis": "campaign",
            "text": f"seasonal check ({campaign}), not a predicted failure"}


def explain_factor(factor: Any) -> dict[str, Any]:
    """One of the model's top factors in plain words: what it is, its value with its unit,
    its contribution rounded and how much it moved the risk."""
    if not isinstance(factor, dict) or "feature" not in factor:
        text = str(factor)
        return {"feature": text, "meaning": text, "value": None, "unit": None,
                "contribution": None, "effect": "unknown", "text": text}
    name = str(factor["feature"])
    what = quantity(name)
    raw_value, raw_contribution = factor.get("value"), factor.get("contribution")
    value = (readable(float(raw_value)) if isinstance(raw_value, int | float)
             and is_fact(name, float(raw_value)) else None)
    contribution = (round(float(raw_contribution), 1)
                    if isinstance(raw_contribution, int | float) else None)
    effect = _effect(contribution)
    shown = f" {with_unit(value, what.unit)}" if value is not None else ""
    return {"feature": name, "meaning": what.meaning, "value": value, "unit": what.unit,
            "contribution": contribution, "effect": effect,
            "text": f"{what.meaning}{shown} {effect}"}


def _effect(contribution: float | None) -> str:
    """A contribution (log-odds, against the training fleet's average) as words."""
    if contribution is None:
        return "unknown"
    size = abs(contribution)
    direction = "raises" if contribution > 0 else "lowers"
    if size < 0.05:
        return "hardly changes the risk"
    strength = "strongly " if size >= 2 else "" if size >= 0.5 else "slightly "
    return f"{strength}{direction} the risk"


def headline(component: str, severity: str, values: dict[str, float],
             codes: list[dict[str, Any]], campaign: str | None) -> str:
    """One sentence: the state of the part, the reason, and what to do.

    A lead with fault codes names them (the car's own verdict) instead of its readings. Only
    facts are quoted (:func:`is_fact`): a days-to-limit at its cap is not a date.
    """
    facts = {n: v for n, v in values.items() if is_fact(n, v)}
    action = ("arrange roadside assistance and do not book a drive-in"
              if severity == "critical" else ACTIONS[component])
    reason = _code_reason(codes) if codes else ""
    state = "" if codes else _STATE[component](facts)  # the code is the reason, not a reading
    if campaign is not None and component == "lv_battery":
        state = state or "12 V battery weak"
        return f"{state} and frost is forecast: book a 12 V battery test before the cold"
    parts = [p for p in (reason, state) if p]
    said = "; ".join(parts) if parts else f"{_COMPONENT_WORDS[component]} predicted to fail"
    return f"{said[0].upper()}{said[1:]}: {action}"


def _code_reason(codes: list[dict[str, Any]]) -> str:
    shown = ", ".join(f"{c['code']} ({c['description']})" for c in codes[:2])
    more = f" and {len(codes) - 2} more" if len(codes) > 2 else ""
    noun = "fault code" if len(codes) == 1 else "fault codes"
    worst = max((c["severity"] for c in codes), key=_SEVERITIES.index)
    return f"{worst} {noun} {shown}{more}"


_SEVERITIES: Final = ("low", "medium", "high", "critical")


def _brakes(facts: dict[str, float]) -> str:
    wheels = {k: facts[f"pad_wear_{k}"] for k in _WHEEL_WORDS if f"pad_wear_{k}" in facts}
    wear = facts.get("pad_wear_max", max(wheels.values(), default=math.nan))
    if not math.isfinite(wear):
        return ""
    worst = max(wheels, key=lambda k: wheels[k]) if wheels else None
    axle = {"f": "front ", "r": "rear "}.get(worst[0], "") if worst else ""
    text = f"{axle}brake pads about {readable(wear):g} % worn"
    days, km = facts.get("pad_days_to_limit"), facts.get("pad_km_to_limit")
    if days is not None and days < 1:
        text += ", at the wear limit now"
    elif days is not None:
        text += f", roughly {_days(days)} to the limit"
        if km is not None and km > 0:
            text += f" at this car's {readable(km / days):g} km a day"
    elif km is not None and km > 0:
        text += f", roughly {readable(km):g} km to the limit"
    return text


def _traction(facts: dict[str, float]) -> str:
    if "soh" not in facts:
        return ""
    text = f"high-voltage battery health at {readable(facts['soh']):g} %"
    days = facts.get("soh_days_to_threshold")
    if days is not None and days > 0:
        text += f", roughly {_days(days)} to {SOH_FAILED:.0f} % at its current trend"
    return text


def _lv(facts: dict[str, float]) -> str:
    if "crank_dip_min" not in facts:
        return ""
    text = f"12 V battery dips to {readable(facts['crank_dip_min']):g} V when starting"
    trend = facts.get("crank_dip_trend_14d")
    if trend is not None and trend < 0:
        text += f", falling {readable(-trend):g} V a day"
    return text


def _days(days: float) -> str:
    whole = max(1, round(days))
    return "1 day" if whole == 1 else f"{whole} days"


_STATE: Final = {"brakes": _brakes, "traction_battery": _traction, "lv_battery": _lv}

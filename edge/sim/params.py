"""A simulated vehicle's constants, drawn once from its seed: model, usage, initial health.

Every value is drawn in a fixed order even when the spec overrides it, so pinning one value
(a test's worn pads) never shifts another; the model and usage profile set the ranges some
values are drawn from.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from edge.sim.usage import (
    DEFAULT_USAGE,
    MODELS,
    REFERENCE_MODELS,
    USAGES,
    Usage,
    VehicleModel,
    model_named,
    usage_named,
)
from edge.sim.weather import REGIONS, Climate

PAD_WEAR_PER_KM: Final = 0.0022
"""Front pad wear (%) per km at a stop-and-go factor of 1 without regenerative braking."""
REAR_SHARE: Final = 0.6
"""Rear pads wear this much of the fronts' rate (brake balance)."""
VARIANTS: Final = ("ev", "ice")


@dataclass(frozen=True)
class VehicleParams:
    """Per-vehicle constants: what it is, how it is driven and how fast its parts age."""

    variant: str
    climate: Climate
    km_per_day: float
    """Usual distance on a day it drives."""
    stop_go: float
    wheel_bias: tuple[float, float, float, float]
    battery_ageing: float
    lv_ageing: float
    soh0: float
    pads0: tuple[float, float, float, float]
    r0_mohm: float
    snapshot_offset_s: float
    region: str = "central"
    weather: int = 0
    """Seed of the regional weather the vehicle lives in (:mod:`edge.sim.weather`)."""
    model: VehicleModel = MODELS[REFERENCE_MODELS["ev"]]
    usage: Usage = USAGES[DEFAULT_USAGE]

    @property
    def is_ev(self) -> bool:
        """Whether the vehicle has a traction battery."""
        return self.variant == "ev"

    def front_wear_per_km(self) -> float:
        """Mean wear (%) per km of the most-worn front pad; why: to place initial states."""
        model = self.model
        return (PAD_WEAR_PER_KM * self.stop_go * model.regen_share * model.pad_factor
                * max(self.wheel_bias[:2]))

    def mean_km_per_day(self) -> float:
        """Mean distance over all days, parked days included (to place initial states)."""
        return self.km_per_day * (1.0 - self.usage.parked_rate)


def draw_params(
    variant: str, region: str, seed: int, *, soh: float | None = None,
    pad_wear: float | None = None, r_mohm: float | None = None, km_per_day: float | None = None,
    weather: int = 0, model: str | None = None, usage: str | None = None,
) -> VehicleParams:
    """Draw a vehicle's constants from its seed; given values override the drawn ones.

    Raises:
        ValueError: the variant, region, model or usage is unknown, or the model is of the
            other variant.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r} is unknown; use 'ev' or 'ice'")
    if region not in REGIONS:
        raise ValueError(f"region {region!r} is unknown; use one of {sorted(REGIONS)}")
    the_model, the_usage = model_named(model, variant), usage_named(usage)
    rng = random.Random(f"fleetcare-params/{seed}")
    drawn_km, stop_go = rng.uniform(*the_usage.km_per_day), rng.uniform(*the_usage.stop_go)
    bias = tuple(rng.uniform(0.95, 1.05) for _ in range(4))
    battery_ageing = rng.uniform(0.8, 1.25) * the_model.fade_factor
    lv_ageing = rng.uniform(0.8, 1.3) * the_model.lv_factor
    drawn_soh, drawn_pad, drawn_r = rng.uniform(86.0, 99.5), rng.uniform(5.0, 55.0), rng.uniform(
        4.5, 6.5)
    front_ratio, rear_ratio = rng.uniform(0.93, 1.0), (rng.uniform(0.5, 0.7), rng.uniform(0.5, 0.7))
    left_worst = rng.random() < 0.5
    offset = round(rng.uniform(0.0, 3600.0), 3)
    worst = drawn_pad if pad_wear is None else pad_wear
    fronts = (worst, worst * front_ratio) if left_worst else (worst * front_ratio, worst)
    return VehicleParams(
        variant=variant, climate=REGIONS[region],
        km_per_day=drawn_km if km_per_day is None else km_per_day, stop_go=stop_go,
        wheel_bias=(bias[0], bias[1], bias[2], bias[3]), battery_ageing=battery_ageing,
        lv_ageing=lv_ageing, soh0=drawn_soh if soh is None else soh,
        pads0=(fronts[0], fronts[1], worst * rear_ratio[0], worst * rear_ratio[1]),
        r0_mohm=drawn_r if r_mohm is None else r_mohm, snapshot_offset_s=offset,
        region=region, weather=weather, model=the_model, usage=the_usage,
    )

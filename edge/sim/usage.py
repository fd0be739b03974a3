"""Who the simulated vehicles are: four models and four ways of using a car.

A fleet is not one car driven one way. The **model** sets the hardware: pack size and
consumption (how many full cycles a kilometre costs the traction battery), how hard braking
is on the pads (weight, regeneration), how much current the 12 V battery must give at a start
or wake-up, and how fast each part ages. The **usage profile** sets how the car is driven:
kilometres a day, how much of it is stop-and-go, how often it stays parked all day (no start,
no data) and how often its gateway goes offline for a streak of days (an underground garage,
a dead zone: the car drives, nothing reaches the backend). Model names are what the register
(``vehicles.csv``) lists and the ground truth names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class VehicleModel:
    """One model's constants."""

    name: str
    variant: str
    """``ev`` (a traction battery) or ``ice``."""
    pack_kwh: float
    kwh_per_km: float
    crank_amps: float
    """Current at an engine crank (ICE) or at wake-up, contactors and pumps (EV)."""
    regen_share: float
    """Share of friction braking left once regeneration has taken its part (1: none)."""
    pad_factor: float
    """Pad wear per braking energy relative to the reference car (weight, pad compound)."""
    fade_factor: float
    """Traction-pack ageing relative to the reference pack (chemistry, cooling)."""
    lv_factor: float
    """12 V battery ageing relative to the reference (its size against the loads)."""


MODELS: Final = {m.name: m for m in (
    VehicleModel("Aurora EV", "ev", 64.0, 0.17, 110.0, 0.55, 1.0, 1.0, 1.0),
    VehicleModel("Cirrus EV", "ev", 40.0, 0.15, 95.0, 0.60, 0.85, 1.25, 1.1),
    VehicleModel("Borealis ICE", "ice", 0.0, 0.0, 200.0, 1.0, 1.0, 0.0, 1.0),
    VehicleModel("Dune ICE", "ice", 0.0, 0.0, 260.0, 1.0, 1.3, 0.0, 0.9),
)}
"""Two EVs (a long-range car, a small city car with a faster-ageing pack) and two ICE cars
(a saloon, a heavy SUV that eats pads and needs a strong starter)."""
REFERENCE_MODELS: Final = {"ev": "Aurora EV", "ice": "Borealis ICE"}
"""The model a spec without one gets: the reference vehicle of each variant."""


@dataclass(frozen=True, slots=True)
class Usage:
    """One usage profile: how far, how stop-and-go, how often parked or out of reach."""

    name: str
    km_per_day: tuple[float, float]
    """Range a vehicle's usual daily distance (on days it drives) is drawn from."""
    stop_go: tuple[float, float]
    """Range of its stop-and-go factor: braking energy per km relative to mixed driving."""
    parked_rate: float
    """Chance that the car stays parked all day."""
    offline_rate: float
    """Chance, on a day the gateway is online, that an offline streak starts."""
    offline_days: float
    """Mean length of an offline streak (days)."""
    share: float
    """Share of a mixed fleet (:func:`edge.sim.simulator.make_fleet`)."""


USAGES: Final = {u.name: u for u in (
    Usage("commuter", (30.0, 60.0), (0.9, 1.2), 0.15, 0.010, 2.0, 0.45),
    Usage("high_mileage", (90.0, 160.0), (0.6, 0.9), 0.04, 0.006, 2.0, 0.20),
    Usage("urban", (15.0, 40.0), (1.3, 1.8), 0.10, 0.015, 3.0, 0.20),
    Usage("occasional", (8.0, 30.0), (0.9, 1.3), 0.50, 0.020, 4.0, 0.15),
)}
DEFAULT_USAGE: Final = "commuter"
"""The profile of a spec without one."""


def model_named(name: str | None, variant: str) -> VehicleModel:
    """The model ``name`` (None: the variant's reference model), checked against the variant.

    Raises:
        ValueError: the model is unknown or of the other variant.
    """
    model = MODELS.get(name or REFERENCE_MODELS.get(variant, ""))
    if model is None:
        raise ValueError(f"model {name!r} is unknown; use one of {sorted(MODELS)}")
    if model.variant != variant:
        raise ValueError(f"model {model.name!r} is an {model.variant.upper()}, not an "
                         f"{variant.upper()}")
    return model


def usage_named(name: str | None) -> Usage:
    """The usage profile ``name`` (None: :data:`DEFAULT_USAGE`).

    Raises:
        ValueError: the profile is unknown.
    """
    usage = USAGES.get(name or DEFAULT_USAGE)
    if usage is None:
        raise ValueError(f"usage {name!r} is unknown; use one of {sorted(USAGES)}")
    return usage

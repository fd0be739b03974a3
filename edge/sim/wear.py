"""The hidden health model behind the fleet simulator.

Each simulated vehicle carries a state that nobody on the bus can see directly: the traction
pack's capacity (state of health), the wear of each brake pad and the internal resistance of
the 12 V battery. Usage and weather age that state day by day; the simulator then shows it on
the bus with noise, and the ground truth is read from the same model. Keeping the model apart
from frame generation lets the truth be computed without producing a single frame.

All randomness of the hidden state comes from one ``random.Random`` per vehicle, seeded from
the vehicle's seed, so a spec and seed always give the same life story.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Final

from edge.sim.weather import DAY_S, DIURNAL_DROP_C, REGIONS, Climate, daily_min_c, day_number

SOH_FAILED: Final = 70.0
"""Traction pack state of health (%) below which the pack counts as failed."""
PAD_WEAR_FAILED: Final = 100.0
"""Pad wear (%) at the wear limit: the most-worn pad reaching it fails the brakes."""
DIP_FAILED_V: Final = 9.6
"""Cranking dip (V) below which a starter or EV wake-up no longer succeeds."""

_PACK_KWH: Final = 64.0
_KWH_PER_KM: Final = 0.17
_PAD_WEAR_PER_KM: Final = 0.0022
"""Front pad wear (%) per km at a stop-and-go factor of 1 without regenerative braking."""
_REAR_SHARE: Final = 0.6
_EV_REGEN_SHARE: Final = 0.55
_CRANK_AMPS: Final = {"ev": 110.0, "ice": 200.0}
"""Current drawn at an engine crank (ICE) or at wake-up, contactors and pumps (EV)."""


@dataclass(frozen=True)
class VehicleParams:
    """Per-vehicle constants: how it is driven and how fast its parts age."""

    variant: str
    climate: Climate
    km_per_day: float
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

    @property
    def is_ev(self) -> bool:
        """Whether the vehicle has a traction battery."""
        return self.variant == "ev"

    def front_wear_per_km(self) -> float:
        """Mean wear (%) per km of the most-worn front pad; why: to place initial states."""
        regen = _EV_REGEN_SHARE if self.is_ev else 1.0
        return _PAD_WEAR_PER_KM * self.stop_go * regen * max(self.wheel_bias[:2])


def draw_params(
    variant: str, region: str, seed: int, *, soh: float | None = None,
    pad_wear: float | None = None, r_mohm: float | None = None, km_per_day: float | None = None,
    weather: int = 0,
) -> VehicleParams:
    """Draw a vehicle's constants from its seed; given values override the drawn ones.

    Every value is drawn even when it is overridden, so overriding one never shifts another.

    Raises:
        ValueError: the variant or region is unknown.
    """
    if variant not in _CRANK_AMPS:
        raise ValueError(f"variant {variant!r} is unknown; use 'ev' or 'ice'")
    if region not in REGIONS:
        raise ValueError(f"region {region!r} is unknown; use one of {sorted(REGIONS)}")
    rng = random.Random(f"fleetcare-params/{seed}")
    drawn_km, stop_go = rng.uniform(25.0, 85.0), rng.uniform(0.7, 1.5)
    bias = tuple(rng.uniform(0.95, 1.05) for _ in range(4))
    battery_ageing, lv_ageing = rng.uniform(0.8, 1.25), rng.uniform(0.8, 1.3)
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
        region=region, weather=weather,
    )


def crank_dip_v(r_mohm: float, temp_c: float, variant: str) -> float:
    """Lowest 12 V voltage at a crank or wake-up: rest voltage minus current times resistance.

    Cold lowers the rest voltage, raises the current a cold engine needs and raises the
    battery's effective resistance, which is why 12 V batteries die on winter mornings.
    """
    cold = max(0.0, 20.0 - temp_c)
    rest_v = 12.65 - 0.006 * cold
    amps = _CRANK_AMPS[variant] * (1.0 + 0.008 * cold)
    return rest_v - amps * r_mohm * (1.0 + 0.006 * cold) / 1000.0


def soh_fade_per_day(soh: float, battery_temp_c: float, km: float, ambient_c: float) -> float:
    """Capacity lost (SoH points) in one day: calendar plus cycling, faster when hot and old.

    Calendar ageing follows an Arrhenius factor on the pack temperature; cycling ageing is
    proportional to the energy throughput (equivalent full cycles). Both speed up as the pack
    ages, the "knee" seen in real fade curves.
    """
    arrhenius = math.exp(5500.0 * (1.0 / 298.15 - 1.0 / (battery_temp_c + 273.15)))
    cycles = km * _KWH_PER_KM / _PACK_KWH
    cycling = 0.04 * cycles * (1.3 if ambient_c < 0.0 else 1.0)
    knee = 1.0 + ((100.0 - soh) / 12.0) ** 2
    return (0.006 * arrhenius + cycling) * knee


@dataclass(frozen=True)
class DayState:
    """The hidden state at the start of one day (the morning check) and that day's conditions."""

    day: int
    ts: float
    ambient_c: float
    """The day's mean air temperature where the vehicle is (it ages the parts)."""
    morning_c: float
    """The air temperature at the morning start: the region's daily minimum, give or take
    where the car stands."""
    km: float
    soh: float
    pads: tuple[float, float, float, float]
    r_mohm: float
    dip_v: float
    odometer_km: float
    crank_count: int
    renewed: tuple[str, ...] = ()
    """Components the workshop replaced since the previous morning (new from today)."""
    parked: bool = False
    """The car stays parked all day: no start, no driving, no snapshot."""
    offline: bool = False
    """The gateway has no connection today: the car drives, nothing reaches the backend."""

    @property
    def reports(self) -> bool:
        """Whether the day's snapshot reaches the backend."""
        return not (self.parked or self.offline)

    @property
    def max_pad_wear(self) -> float:
        """Wear of the most-worn pad, the one that fails the brakes."""
        return max(self.pads)

    def failed(self, is_ev: bool) -> tuple[bool, bool, bool]:
        """Whether (traction battery, 12 V battery, brakes) are failed at this morning check."""
        return (is_ev and self.soh < SOH_FAILED, self.dip_v < DIP_FAILED_V,
                self.max_pad_wear >= PAD_WEAR_FAILED)


@dataclass(frozen=True, slots=True)
class WorkshopOrder:
    """A visit the simulated workshop records: what ``repair_orders.csv`` exports."""

    day: int
    opened_ts: float
    component: str
    kind: str
    """``unscheduled``, ``roadside``, ``preventive`` or ``inspection``."""
    odometer_km: float


ROADSIDE_SHARE: Final = {"traction_battery": 0.3, "lv_battery": 0.6, "brakes": 0.1}
"""Share of failures that end in a breakdown with assistance (opened the day they happen)."""
REPAIR_DELAY_DAYS: Final = ((0, 0.15), (1, 0.35), (2, 0.25), (3, 0.12), (4, 0.08), (5, 0.05))
"""Days from a failure to its unscheduled repair order, and how often each occurs: the driver
notices, books and brings the car in."""
SERVICE_VISITS_PER_DAY: Final = 1.0 / 365.0
"""Chance of a routine service visit on any day (about one a year); it inspects the brakes."""
PREVENTIVE_PAD_WEAR: Final = 90.0
"""Pad wear (%) at which a service visit replaces the pads before they fail."""
_COMPONENT_ORDER: Final = ("traction_battery", "lv_battery", "brakes")


@dataclass
class HealthModel:
    """Steps one vehicle's hidden state through its days; ``step`` is the only mutator.

    The vehicle goes to a workshop too: a failed component is repaired (renewed) by an order
    opened 0-5 days later (the same day for a roadside breakdown), and a routine service visit
    about once a year inspects the brakes and replaces pads at :data:`PREVENTIVE_PAD_WEAR`.
    A renewed part is new from the next morning on. ``orders`` lists every visit so far. The
    workshop draws from its own random stream, so the life up to the first visit is the same
    as without one.
    """

    params: VehicleParams
    seed: int
    start_ts: float
    day: int = 0
    soh: float = field(init=False)
    pads: list[float] = field(init=False)
    r_mohm: float = field(init=False)
    odometer_km: float = field(init=False)
    crank_count: int = field(init=False)
    orders: list[WorkshopOrder] = field(init=False, default_factory=list)
    _rng: random.Random = field(init=False, repr=False)
    _shop: random.Random = field(init=False, repr=False)
    _due: dict[str, int] = field(init=False, default_factory=dict)
    """Component -> day of the order that replaces it (renewed the morning after)."""
    _unscheduled: dict[str, int] = field(init=False, default_factory=dict)
    """Component -> day its unscheduled repair order will be opened."""

    def __post_init__(self) -> None:
        self._rng = random.Random(f"fleetcare-health/{self.seed}")
        self._shop = random.Random(f"fleetcare-workshop/{self.seed}")
        self.soh, self.pads, self.r_mohm = self.params.soh0, list(self.params.pads0), (
            self.params.r0_mohm)
        self.odometer_km = round(self._rng.uniform(5_000.0, 60_000.0), 1)
        self.crank_count = self._rng.randrange(2_000, 20_000)

    def step(self) -> DayState:
        """Return this morning's state, then age the vehicle by the day's driving."""
        rng, params = self._rng, self.params
        renewed = self._renew_due()
        ts = self.start_ts + self.day * DAY_S
        morning = daily_min_c(params.weather, params.region, day_number(ts)) + rng.gauss(0.0, 0.8)
        ambient = morning + DIURNAL_DROP_C
        km = params.km_per_day * min(3.0, max(0.1, rng.lognormvariate(0.0, 0.35)))
        state = DayState(
            day=self.day, ts=ts, ambient_c=ambient, morning_c=morning, km=km, soh=self.soh,
            pads=(self.pads[0], self.pads[1], self.pads[2], self.pads[3]), r_mohm=self.r_mohm,
            dip_v=crank_dip_v(self.r_mohm, morning, params.variant),
            odometer_km=self.odometer_km, crank_count=self.crank_count, renewed=renewed,
        )
        self._book_repairs(state)
        self._service_visit(state)
        self._age(state, rng)
        self.day += 1
        return state

    def _order(self, day: int, component: str, kind: str) -> None:
        """Record a visit on ``day`` (workshop hours) and renew the part after it if replaced."""
        opened = self.start_ts + day * DAY_S + self._shop.uniform(10.0, 17.0) * 3600.0
        self.orders.append(WorkshopOrder(day, round(opened, 3), component, kind,
                                         round(self.odometer_km, 1)))
        if kind != "inspection":
            self._due[component] = day

    def _book_repairs(self, state: DayState) -> None:
        """A failure seen this morning gets its repair order, unless one is already due."""
        shop = self._shop
        for name, failed in zip(_COMPONENT_ORDER, state.failed(self.params.is_ev), strict=True):
            if not failed or name in self._due:
                continue
            if shop.random() < ROADSIDE_SHARE[name]:
                self._order(state.day, name, "roadside")
                continue
            delays, weights = zip(*REPAIR_DELAY_DAYS, strict=True)
            delay = shop.choices(delays, weights)[0]
            self._due[name] = state.day + delay
            self._unscheduled[name] = state.day + delay

    def _service_visit(self, state: DayState) -> None:
        """A repair order due today is opened; a routine visit inspects the brakes."""
        for name, day in sorted(self._unscheduled.items()):
            if day == state.day:
                del self._unscheduled[name]
                self._order(day, name, "unscheduled")
        if self._shop.random() >= SERVICE_VISITS_PER_DAY or "brakes" in self._due:
            return
        worn = state.max_pad_wear >= PREVENTIVE_PAD_WEAR
        self._order(state.day, "brakes", "preventive" if worn else "inspection")

    def _renew_due(self) -> tuple[str, ...]:
        """Fit new parts for every order opened before today."""
        done = tuple(sorted(n for n, day in self._due.items()
                            if day < self.day and n not in self._unscheduled))
        shop = self._shop
        for name in done:
            del self._due[name]
            if name == "traction_battery":
                self.soh = shop.uniform(99.0, 100.0)
            elif name == "lv_battery":
                self.r_mohm = shop.uniform(4.5, 5.5)
            else:
                self.pads = [shop.uniform(0.0, 3.0) for _ in range(4)]
        return done

    def _age(self, state: DayState, rng: random.Random) -> None:
        params, ambient, km = self.params, state.ambient_c, state.km
        if params.is_ev:
            battery_c = min(45.0, max(5.0, ambient + 6.0))
            fade = soh_fade_per_day(self.soh, battery_c, km, ambient)
            self.soh = max(0.0, self.soh - fade * params.battery_ageing * rng.uniform(0.8, 1.2))
        regen = _EV_REGEN_SHARE if params.is_ev else 1.0
        for i in range(4):
            axle = 1.0 if i < 2 else _REAR_SHARE
            wear = km * _PAD_WEAR_PER_KM * params.stop_go * regen * axle * params.wheel_bias[i]
            self.pads[i] = min(150.0, self.pads[i] + wear * max(0.0, rng.gauss(1.0, 0.1)))
        heat = 1.0 + 0.06 * max(0.0, ambient - 25.0) + 0.03 * max(0.0, -ambient)
        growth = 0.0022 * params.lv_ageing * heat * math.sqrt(self.r_mohm / 5.0)
        self.r_mohm = min(100.0, self.r_mohm + growth * rng.uniform(0.7, 1.3))
        self.odometer_km += km
        self.crank_count += rng.randint(2, 5)


_MEAN_KM_FACTOR: Final = math.exp(0.35**2 / 2)
"""Mean of the daily lognormal distance factor, so placements use the true mean distance."""


def soh_failing_after(params: VehicleParams, days: float) -> float:
    """Initial SoH that fades to the failure threshold after about ``days`` of usual driving.

    Solves the fade law at the region's mean temperature: with x = (100 - SoH) / 12 the knee
    makes dx/dt proportional to 1 + x², so atan(x) grows linearly in time.
    """
    climate = params.climate
    battery_c = min(45.0, max(5.0, climate.mean_c + 6.0))
    km = params.km_per_day * _MEAN_KM_FACTOR
    rate = soh_fade_per_day(100.0, battery_c, km, climate.mean_c) * params.battery_ageing
    angle = math.atan((100.0 - SOH_FAILED) / 12.0) - rate * days / 12.0
    return 100.0 - 12.0 * math.tan(max(0.0, angle))


def pad_wear_failing_after(params: VehicleParams, days: float) -> float:
    """Initial max pad wear that reaches the wear limit after about ``days`` of usual driving."""
    per_day = params.km_per_day * _MEAN_KM_FACTOR * params.front_wear_per_km()
    return max(0.0, PAD_WEAR_FAILED - per_day * days)


def resistance_failing_at(params: VehicleParams, ts: float | None, margin: float) -> float:
    """12 V resistance (mΩ) at which a slightly cold morning around ``ts`` just fails the crank.

    With ``ts`` None the region's mean temperature stands in for the season. ``margin`` below 1
    leaves headroom, so the failure waits for a colder morning or a few more weeks of ageing.
    """
    climate = params.climate
    season_c = climate.mean_c if ts is None else climate.seasonal_c(ts)
    morning_c = season_c - 7.0
    at_zero = crank_dip_v(0.0, morning_c, params.variant)
    per_mohm = at_zero - crank_dip_v(1.0, morning_c, params.variant)
    return (at_zero - DIP_FAILED_V) / per_mohm * margin

"""The hidden health model behind the fleet simulator.

Each simulated vehicle carries a state that nobody on the bus can see directly: the traction
pack's permanent capacity (state of health) and the part of it a rest lends back for a while,
the wear of each brake pad, the internal resistance and charge of the 12 V battery. Usage and
the regional weather age that state day by day; the sensors then show it, each in its own way
(:mod:`edge.sim.readings`), and the ground truth is read from the same model. Keeping the
model apart from frame generation lets the truth be computed without producing a frame.

What makes a failure, here and in the ground truth:

- traction battery: the true, permanent SoH below :data:`SOH_FAILED`;
- brakes: the most-worn pad at the wear limit;
- 12 V battery: a morning start (the car is not parked) whose cranking voltage, pulled down
  by internal resistance, cold and a charge drained by parked days, falls below what the
  starter needs (:data:`DIP_FAILED_V`);
- any of them *suddenly*: a small daily hazard per component (:data:`SUDDEN_HAZARD`) that no
  health signal announces: a contactor, a shorted cell, a seized caliper.

No component fails before the vehicle has sent :data:`WARMUP_DATA_DAYS` days of data: an
initial state that would (a test's spec, a drawn worn part, a first cold morning) is
*clamped*: made a little healthier until the warm-up passes without a failure, and sudden
failures start after the warm-up.

Every stream of randomness is seeded from the vehicle's seed alone (health, usage, gateway,
sudden failures, workshop), so a spec and seed always give the same life story.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field
from typing import Final

from edge.sim.params import PAD_WEAR_PER_KM, REAR_SHARE, VehicleParams
from edge.sim.usage import VehicleModel
from edge.sim.weather import DAY_S, DIURNAL_DROP_C, daily_min_c, day_number

SOH_FAILED: Final = 70.0
"""Traction pack state of health (%) below which the pack counts as failed."""
PAD_WEAR_FAILED: Final = 100.0
"""Pad wear (%) at the wear limit: the most-worn pad reaching it fails the brakes."""
DIP_FAILED_V: Final = 9.6
"""Cranking dip (V) below which a starter or EV wake-up no longer succeeds."""
WARMUP_DATA_DAYS: Final = 30
"""Days of data a vehicle sends before any of its components may fail."""
SUDDEN_HAZARD: Final = {"traction_battery": 1.0e-4, "lv_battery": 3.8e-5, "brakes": 8.0e-5}
"""Daily chance, on a day it is driven, that a component fails with no warning."""
REST_GAIN: Final = 0.35
"""SoH points of capacity a parked day lends back to the pack (relaxation), at most
:data:`REST_MAX`; it fades by :data:`REST_FADE` a driven day."""
REST_MAX: Final = 1.5
REST_FADE: Final = 0.75
LV_DRAIN_V: Final = 0.04
"""Rest voltage a parked day costs the 12 V battery (quiescent loads), at most
:data:`LV_DRAIN_MAX_V`; a drive recharges it."""
LV_DRAIN_MAX_V: Final = 0.3
COMPONENTS: Final = ("traction_battery", "lv_battery", "brakes")
_SETTLE_TRIES: Final = 200


def crank_dip_v(r_mohm: float, temp_c: float, amps: float) -> float:
    """Lowest 12 V voltage at a crank or wake-up: rest voltage minus current times resistance.

    Cold lowers the rest voltage, raises the current a cold engine needs and raises the
    battery's effective resistance, which is why 12 V batteries die on winter mornings.
    """
    cold = max(0.0, 20.0 - temp_c)
    rest_v = 12.65 - 0.006 * cold
    current = amps * (1.0 + 0.008 * cold)
    return rest_v - current * r_mohm * (1.0 + 0.006 * cold) / 1000.0


def soh_fade_per_day(soh: float, battery_temp_c: float, km: float, ambient_c: float,
                     model: VehicleModel) -> float:
    """Capacity lost (SoH points) in one day: calendar plus cycling, faster when hot and old.

    Calendar ageing follows an Arrhenius factor on the pack temperature; cycling ageing is
    proportional to the energy throughput (equivalent full cycles of the model's pack). Both
    speed up as the pack ages, the "knee" seen in real fade curves.
    """
    arrhenius = math.exp(5500.0 * (1.0 / 298.15 - 1.0 / (battery_temp_c + 273.15)))
    cycles = km * model.kwh_per_km / model.pack_kwh if model.pack_kwh else 0.0
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
    """The pack's true, permanent state of health (%)."""
    pads: tuple[float, float, float, float]
    r_mohm: float
    dip_v: float
    odometer_km: float
    crank_count: int
    renewed: tuple[str, ...] = ()
    """Components the workshop replaced since the previous morning (new from today)."""
    usable_soh: float = 0.0
    """Capacity usable today (%): the permanent SoH plus what recent rests lent back."""
    parked: bool = False
    """The car stays parked all day: no start, no driving, no snapshot."""
    offline: bool = False
    """The gateway has no connection today: the car drives, nothing reaches the backend."""
    broken: tuple[str, ...] = ()
    """Components failed suddenly (no health signal announced it) and not yet replaced."""
    data_days: int = 0
    """Days of data the vehicle had sent before today."""

    @property
    def reports(self) -> bool:
        """Whether the day's snapshot reaches the backend."""
        return not (self.parked or self.offline)

    @property
    def max_pad_wear(self) -> float:
        """Wear of the most-worn pad, the one that fails the brakes."""
        return max(self.pads)

    def failed(self, is_ev: bool) -> tuple[bool, bool, bool]:
        """Whether (traction battery, 12 V battery, brakes) are failed at this morning check.

        A 12 V battery fails at a start, so not on a day the car stays parked.
        """
        broken = self.broken
        return (is_ev and (self.soh < SOH_FAILED or "traction_battery" in broken),
                (self.dip_v < DIP_FAILED_V and not self.parked) or "lv_battery" in broken,
                self.max_pad_wear >= PAD_WEAR_FAILED or "brakes" in broken)


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


@dataclass
class HealthModel:
    """Steps one vehicle's hidden state through its days; ``step`` is the only mutator.

    The vehicle goes to a workshop too: a failed component is repaired (renewed) by an order
    opened 0-5 days later (the same day for a roadside breakdown), and a routine service visit
    about once a year inspects the brakes and replaces pads at :data:`PREVENTIVE_PAD_WEAR`.
    A renewed part is new from the next morning on. ``orders`` lists every visit so far,
    ``sudden`` every sudden failure (day, component). The workshop draws from its own random
    stream, so the life up to the first visit is the same as without one.

    With ``settle`` (the default) an initial state that would fail within the warm-up is
    first clamped (:data:`WARMUP_DATA_DAYS`); ``params`` is then the clamped one.
    """

    params: VehicleParams
    seed: int
    start_ts: float
    day: int = 0
    settle: bool = True
    soh: float = field(init=False)
    pads: list[float] = field(init=False)
    r_mohm: float = field(init=False)
    odometer_km: float = field(init=False)
    crank_count: int = field(init=False)
    data_days: int = field(init=False, default=0)
    orders: list[WorkshopOrder] = field(init=False, default_factory=list)
    sudden: list[tuple[int, str]] = field(init=False, default_factory=list)
    _rest: float = field(init=False, default=0.0)
    _drain_v: float = field(init=False, default=0.0)
    _offline_left: int = field(init=False, default=0)
    _broken: set[str] = field(init=False, default_factory=set)
    _streams: dict[str, random.Random] = field(init=False, repr=False)
    _due: dict[str, int] = field(init=False, default_factory=dict)
    """Component -> day of the order that replaces it (renewed the morning after)."""
    _unscheduled: dict[str, int] = field(init=False, default_factory=dict)
    """Component -> day its unscheduled repair order will be opened."""

    def __post_init__(self) -> None:
        if self.settle:
            self.params = self._settled()
        self._streams = {name: random.Random(f"fleetcare-{name}/{self.seed}")
                         for name in ("health", "workshop", "usage", "gateway", "sudden")}
        rng = self._streams["health"]
        self.soh, self.pads, self.r_mohm = self.params.soh0, list(self.params.pads0), (
            self.params.r0_mohm)
        self.odometer_km = round(rng.uniform(5_000.0, 60_000.0), 1)
        self.crank_count = rng.randrange(2_000, 20_000)

    def step(self) -> DayState:
        """Return this morning's state, then age the vehicle by the day's driving."""
        rng, params = self._streams["health"], self.params
        renewed = self._renew_due()
        ts = self.start_ts + self.day * DAY_S
        morning = daily_min_c(params.weather, params.region, day_number(ts)) + rng.gauss(0.0, 0.8)
        parked = self._streams["usage"].random() < params.usage.parked_rate
        offline = self._offline_today()
        factor = min(3.0, max(0.1, rng.lognormvariate(0.0, 0.35)))
        self._sudden_failures(parked)
        state = DayState(
            day=self.day, ts=ts, ambient_c=morning + DIURNAL_DROP_C, morning_c=morning,
            km=0.0 if parked else params.km_per_day * factor, soh=self.soh,
            pads=(self.pads[0], self.pads[1], self.pads[2], self.pads[3]), r_mohm=self.r_mohm,
            dip_v=crank_dip_v(self.r_mohm, morning, params.model.crank_amps) - self._drain_v,
            odometer_km=self.odometer_km, crank_count=self.crank_count, renewed=renewed,
            usable_soh=self.soh + self._rest if params.is_ev else 0.0, parked=parked,
            offline=offline, broken=tuple(sorted(self._broken)), data_days=self.data_days,
        )
        self._book_repairs(state)
        self._service_visit(state)
        self._age(state, rng)
        self.data_days += state.reports
        self.day += 1
        return state

    def _offline_today(self) -> bool:
        """Gateway offline streaks: a start chance per online day, a geometric length."""
        gateway, usage = self._streams["gateway"], self.params.usage
        start, length = gateway.random(), gateway.random()
        if self._offline_left > 0:
            self._offline_left -= 1
            return True
        if start < usage.offline_rate:
            # geometric with mean offline_days: today plus the rest of the streak
            stay = 1.0 - 1.0 / usage.offline_days
            self._offline_left = int(math.log(1.0 - length) / math.log(stay)) if stay > 0 else 0
            return True
        return False

    def _sudden_failures(self, parked: bool) -> None:
        """The hazard no signal announces; drawn every day, so it never shifts a stream."""
        hazard = self._streams["sudden"]
        for name in COMPONENTS:
            chance = hazard.random()
            if (self.data_days < WARMUP_DATA_DAYS or parked or name in self._broken
                    or (name == "traction_battery" and not self.params.is_ev)):
                continue
            if chance < SUDDEN_HAZARD[name]:
                self._broken.add(name)
                self.sudden.append((self.day, name))

    def _order(self, day: int, component: str, kind: str) -> None:
        """Record a visit on ``day`` (workshop hours) and renew the part after it if replaced."""
        hour = self._streams["workshop"].uniform(10.0, 17.0)
        opened = self.start_ts + day * DAY_S + hour * 3600.0
        self.orders.append(WorkshopOrder(day, round(opened, 3), component, kind,
                                         round(self.odometer_km, 1)))
        if kind != "inspection":
            self._due[component] = day

    def _book_repairs(self, state: DayState) -> None:
        """A failure seen this morning gets its repair order, unless one is already due."""
        shop = self._streams["workshop"]
        for name, failed in zip(COMPONENTS, state.failed(self.params.is_ev), strict=True):
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
        if self._streams["workshop"].random() >= SERVICE_VISITS_PER_DAY or "brakes" in self._due:
            return
        worn = state.max_pad_wear >= PREVENTIVE_PAD_WEAR
        self._order(state.day, "brakes", "preventive" if worn else "inspection")

    def _renew_due(self) -> tuple[str, ...]:
        """Fit new parts for every order opened before today."""
        done = tuple(sorted(n for n, day in self._due.items()
                            if day < self.day and n not in self._unscheduled))
        shop = self._streams["workshop"]
        for name in done:
            del self._due[name]
            self._broken.discard(name)
            if name == "traction_battery":
                self.soh, self._rest = shop.uniform(99.0, 100.0), 0.0
            elif name == "lv_battery":
                self.r_mohm, self._drain_v = shop.uniform(4.5, 5.5), 0.0
            else:
                self.pads = [shop.uniform(0.0, 3.0) for _ in range(4)]
        return done

    def _age(self, state: DayState, rng: random.Random) -> None:
        params, ambient, km = self.params, state.ambient_c, state.km
        model = params.model
        fade_noise, pad_noise = rng.uniform(0.8, 1.2), [rng.gauss(1.0, 0.1) for _ in range(4)]
        if params.is_ev:
            battery_c = min(45.0, max(5.0, ambient + 6.0))
            fade = soh_fade_per_day(self.soh, battery_c, km, ambient, model)
            self.soh = max(0.0, self.soh - fade * params.battery_ageing * fade_noise)
            self._rest = (min(REST_MAX, self._rest + REST_GAIN) if state.parked
                          else self._rest * REST_FADE)
        for i in range(4):
            axle = 1.0 if i < 2 else REAR_SHARE
            wear = (km * PAD_WEAR_PER_KM * params.stop_go * model.regen_share * model.pad_factor
                    * axle * params.wheel_bias[i])
            self.pads[i] = min(150.0, self.pads[i] + wear * max(0.0, pad_noise[i]))
        heat = 1.0 + 0.06 * max(0.0, ambient - 25.0) + 0.03 * max(0.0, -ambient)
        growth = 0.0022 * params.lv_ageing * heat * math.sqrt(self.r_mohm / 5.0)
        self.r_mohm = min(100.0, self.r_mohm + growth * rng.uniform(0.7, 1.3))
        self._drain_v = min(LV_DRAIN_MAX_V, self._drain_v + LV_DRAIN_V) if state.parked else 0.0
        self.odometer_km += km
        cranks = rng.randint(2, 5)
        self.crank_count += 0 if state.parked else cranks

    def _settled(self) -> VehicleParams:
        """The initial state clamped until no component fails within the warm-up."""
        params = self.params
        for _ in range(_SETTLE_TRIES):
            probe = HealthModel(params, self.seed, self.start_ts, settle=False)
            early = probe._first_warmup_failure()
            if early is None:
                return params
            params = _healthier(params, early)
        return params

    def _first_warmup_failure(self) -> str | None:
        """The first component failed before :data:`WARMUP_DATA_DAYS` days of data, if any."""
        while self.data_days < WARMUP_DATA_DAYS and self.day < 20 * WARMUP_DATA_DAYS:
            state = self.step()
            for name, failed in zip(COMPONENTS, state.failed(self.params.is_ev), strict=True):
                if failed:
                    return name
        return None


def _healthier(params: VehicleParams, component: str) -> VehicleParams:
    """One small step back from the failure of ``component`` in the initial state."""
    if component == "traction_battery":
        return dataclasses.replace(params, soh0=min(100.0, params.soh0 + 0.5))
    if component == "lv_battery":
        return dataclasses.replace(params, r0_mohm=params.r0_mohm * 0.97)
    pads = params.pads0
    return dataclasses.replace(params, pads0=(max(0.0, pads[0] - 2.0), max(0.0, pads[1] - 2.0),
                                              max(0.0, pads[2] - 2.0), max(0.0, pads[3] - 2.0)))

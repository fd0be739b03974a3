"""A seeded fleet simulator: CAN traffic of the reference vehicle, driven by hidden health.

Each simulated day is compressed into a short snapshot of bus traffic (``snapshot_s`` seconds,
starting at that day's 08:00 UTC plus a vehicle-specific offset) in which every message runs at
its DBC ``GenMsgCycleTime``. The values carry the hidden state of :mod:`edge.sim.wear` with
sensor noise, and fault codes appear in ``DIAG_DtcReport`` frames as a failure approaches.
:meth:`VehicleSimulator.truth` tells when each component really fails, for scoring models.

A vehicle whose spec has a VIN (every vehicle of :func:`make_fleet`) answers its gateway's
OBD-II VIN request just before each snapshot (:mod:`edge.sim.vins`), so the agent reads the
VIN as on a real car and reports it in its vehicle info.

The same spec and seed always give byte-identical frames and truth: the hidden state and the
observation noise use separate ``random.Random`` streams, so the truth never depends on whether
frames were generated.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Final

import can
import cantools
from cantools.database.can import Database, Message

from edge.errors import DbcError
from edge.reference import reference_dbc
from edge.sim import placement
from edge.sim.faults import FaultCodes
from edge.sim.faults import dtc_code_to_raw as dtc_code_to_raw  # kept importable from here
from edge.sim.faults import dtc_raw_to_code as dtc_raw_to_code
from edge.sim.params import draw_params
from edge.sim.readings import DayReadings, Sensors, ocv
from edge.sim.usage import MODELS, REFERENCE_MODELS, USAGES
from edge.sim.vins import simulated_vin, vin_exchange
from edge.sim.wear import DAY_S, DayState, HealthModel, VehicleParams, WorkshopOrder
from edge.sim.weather import REGIONS
from edge.wire.contract import COMPONENTS, ComponentTruth, TruthRecord

TRUTH_HORIZON_DAYS: Final = 730
"""How far past the simulated window the truth looks for failures."""
SNAPSHOT_HOUR: Final = 8
MODEL_NAMES: Final = REFERENCE_MODELS
"""The reference model of each variant (a spec without a model is one)."""
_MODELS_OF: Final = {v: sorted(m.name for m in MODELS.values() if m.variant == v)
                     for v in ("ev", "ice")}
NEAR_FAILURE_DAYS: Final = (35.0, 170.0)
"""When :func:`make_fleet`'s near-failure vehicles fail, in days of usual driving: after the
warm-up (:data:`edge.sim.wear.WARMUP_DATA_DAYS`), so every failure has history before it."""
_USAGE_NAMES: Final = sorted(USAGES)
_USAGE_SHARES: Final = [USAGES[n].share for n in _USAGE_NAMES]
_EV_ONLY_PREFIX: Final = "BMS_"
_ICE_ONLY: Final = frozenset({"ECM_Engine"})
_DTC_MESSAGE: Final = "DIAG_DtcReport"
_MAX_DTCS: Final = 3
_VIN_LEAD_S: Final = 0.05
"""The gateway asks for the VIN this long before the snapshot's first frame."""


@dataclass(frozen=True)
class VehicleSpec:
    """Who a simulated vehicle is; optional fields pin its initial health instead of drawing it."""

    vehicle_id: str
    variant: str
    region: str
    seed: int
    battery_soh: float | None = None
    pad_wear: float | None = None
    lv_resistance_mohm: float | None = None
    km_per_day: float | None = None
    vin: str | None = None
    """What the vehicle answers to a VIN request (None: it answers none)."""
    weather: int = 0
    """Seed of the regional weather (:mod:`edge.sim.weather`); a fleet's vehicles share it
    (:func:`make_fleet` gives them the fleet's seed), so a region's cold spells are theirs."""
    model: str | None = None
    """The model (:data:`edge.sim.usage.MODELS`; None: the variant's reference model)."""
    usage: str | None = None
    """The usage profile (:data:`edge.sim.usage.USAGES`; None: a commuter)."""


def load_reference_dbc() -> Database:
    """Load the reference vehicle's DBC that edge ships (``dbc/`` in the repository).

    Raises:
        DbcError: the file is missing or does not parse strictly.
        ReferenceDataError: edge's reference data is not installed at all.
    """
    path = reference_dbc()
    try:
        db = cantools.database.load_file(path, strict=True)
    except (OSError, cantools.database.UnsupportedDatabaseFormatError) as exc:
        raise DbcError(f"cannot load reference DBC {path}: {exc}") from exc
    if not isinstance(db, Database):
        raise DbcError(f"reference DBC {path} is not a CAN database")
    return db


def params_of(spec: VehicleSpec) -> VehicleParams:
    """The hidden-model constants of a spec (drawn from its seed, overridden by its fields)."""
    return draw_params(
        spec.variant, spec.region, spec.seed, soh=spec.battery_soh, pad_wear=spec.pad_wear,
        r_mohm=spec.lv_resistance_mohm, km_per_day=spec.km_per_day, weather=spec.weather,
        model=spec.model, usage=spec.usage,
    )


def make_fleet(n_vehicles: int, *, seed: int, prefix: str = "VIN", failing_share: float = 0.3,
               start_ts: float | None = None) -> list[VehicleSpec]:
    """A mixed fleet (60 % EV) in which about ``failing_share`` of vehicles near a failure.

    Every vehicle gets the VIN :func:`edge.sim.vins.simulated_vin` gives its id and ``seed``
    (the one the simulator's ``vehicles.csv`` registers), the fleet's weather (``seed``), a
    model of its variant (half each) and a usage profile (by :data:`edge.sim.usage.USAGES`'s
    shares).

    Those vehicles get one component placed so that it fails after 35 to 170 days of usual
    driving (:data:`NEAR_FAILURE_DAYS`); the rest draw healthy-to-middle-aged states from
    their seeds (a few of them still fail, e.g. an ageing 12 V battery in a northern winter).
    12 V failures depend on the season, so pass the simulation's ``start_ts`` to place them
    within the window; without it they are placed for a morning of the region's mean
    temperature.

    Raises:
        ValueError: ``n_vehicles`` is negative or ``failing_share`` is outside [0, 1].
    """
    if n_vehicles < 0 or not 0.0 <= failing_share <= 1.0:
        raise ValueError(f"need n_vehicles >= 0 and 0 <= failing_share <= 1, "
                         f"got {n_vehicles} and {failing_share}")
    rng = random.Random(f"fleetcare-fleet/{seed}")
    n_ev = round(0.6 * n_vehicles)
    variants = ["ev"] * n_ev + ["ice"] * (n_vehicles - n_ev)
    rng.shuffle(variants)
    failing = set(rng.sample(range(n_vehicles), round(failing_share * n_vehicles)))
    specs = []
    for i, variant in enumerate(variants):
        vehicle_id = f"{prefix}{i:05d}"
        spec = VehicleSpec(vehicle_id, variant, rng.choice(sorted(REGIONS)),
                           rng.getrandbits(31), vin=simulated_vin(seed, vehicle_id),
                           weather=seed, model=rng.choice(_MODELS_OF[variant]),
                           usage=rng.choices(_USAGE_NAMES, _USAGE_SHARES)[0])
        specs.append(_near_failure(spec, rng, start_ts) if i in failing else spec)
    return specs


def _near_failure(spec: VehicleSpec, rng: random.Random, start_ts: float | None
                  ) -> VehicleSpec:
    params = params_of(spec)
    component = rng.choice(COMPONENTS if params.is_ev else COMPONENTS[1:])
    days = rng.uniform(NEAR_FAILURE_DAYS[0], NEAR_FAILURE_DAYS[1])
    if component == "traction_battery":
        return replace(spec, battery_soh=round(placement.soh_failing_after(params, days), 2))
    if component == "brakes":
        return replace(spec, pad_wear=round(placement.pad_wear_failing_after(params, days), 2))
    when = None if start_ts is None else start_ts + days * DAY_S
    resistance = placement.resistance_failing_at(params, when, rng.uniform(0.95, 1.03))
    return replace(spec, lv_resistance_mohm=round(resistance, 3))


@dataclass(frozen=True, slots=True)
class SimDay:
    """One simulated day: the truth, what the sensors read (None: no data reached the
    backend that day) and the fault codes the ECUs report."""

    state: DayState
    readings: DayReadings | None
    codes: list[dict[str, float]]


class _NoJitter(random.Random):
    """A stream that must never be drawn from: the fast path's messages carry no jitter."""

    def random(self) -> float:
        raise AssertionError("a message the fast path lands drew per-frame jitter")


_NO_JITTER: Final = _NoJitter(0)


class _Encoder:
    """Clamps values into each signal's DBC range, then encodes strictly."""

    __slots__ = ("_limits", "_message")

    def __init__(self, message: Message) -> None:
        self._message = message
        self._limits = {
            s.name: (float(s.minimum if s.minimum is not None else -math.inf),
                     float(s.maximum if s.maximum is not None else math.inf))
            for s in message.signals
        }

    def encode(self, values: dict[str, float]) -> bytes:
        limits = self._limits
        clamped = {k: min(limits[k][1], max(limits[k][0], v)) for k, v in values.items()}
        return self._message.encode(clamped, strict=True)


class _DayView:
    """One day's snapshot as DBC messages; one method per message.

    The values come from the day's :class:`~edge.sim.readings.DayReadings` (what the fast
    path lands too); only signals that move within a snapshot get per-frame jitter, from a
    stream of its own (``jitter``), so generating frames never shifts a reading.
    """

    def __init__(self, readings: DayReadings, params: VehicleParams,
                 jitter: random.Random) -> None:
        self.r, self.p, self.rng = readings, params, jitter
        cells = readings.cells
        self.low, self.high = min(cells), max(cells)

    def current(self, t: float) -> float:
        return 15.0 + 0.9 * self.r.speed(t) + 8.0 * self.r.accel + self.rng.gauss(0.0, 6.0)

    def BMS_PackStatus(self, t: float, k: int) -> dict[str, float]:
        amps = self.current(t)
        volts = 96.0 * ocv(self.r.soc) - amps * self.r.pack_mohm / 1000.0
        return {"PackVoltage": volts + self.rng.gauss(0.0, 0.2), "PackCurrent": amps,
                "StateOfCharge": self.r.soc, "BmsState": 2}

    def BMS_Health(self, t: float, k: int) -> dict[str, float]:
        r = self.r
        return {"StateOfHealth": r.soh, "InsulationResistance": r.insulation_kohm,
                "CellTempMin": r.battery_c - 2.0, "CellTempMax": r.battery_c + 2.0}

    def BMS_CellVoltages(self, t: float, k: int) -> dict[str, float]:
        group, gauss, cells = k % 4, self.rng.gauss, self.r.cells
        values: dict[str, float] = {"CellGroup": group}
        for cell in range(4 * group, 4 * group + 4):
            values[f"Cell{cell + 1:02d}_Voltage"] = cells[cell] + gauss(0.0, 0.002)
        return values

    def BMS_CellSummary(self, t: float, k: int) -> dict[str, float]:
        cells = self.r.cells
        return {"MinCellVoltage": self.low, "MaxCellVoltage": self.high,
                "MinCellId": cells.index(self.low) + 1, "MaxCellId": cells.index(self.high) + 1}

    def VCU_Motion(self, t: float, k: int) -> dict[str, float]:
        return {"VehicleSpeed": self.r.speed(t), "Odometer": self.r.odometer(t)}

    def ESC_WheelSpeeds(self, t: float, k: int) -> dict[str, float]:
        v, gauss = self.r.speed(t), self.rng.gauss
        return {"WheelSpeed_FL": v + gauss(0.0, 0.2), "WheelSpeed_FR": v + gauss(0.0, 0.2),
                "WheelSpeed_RL": v + gauss(0.0, 0.2), "WheelSpeed_RR": v + gauss(0.0, 0.2)}

    def BCM_Brakes(self, t: float, k: int) -> dict[str, float]:
        pads = self.r.pads
        return {"PadWear_FL": pads[0], "PadWear_FR": pads[1], "PadWear_RL": pads[2],
                "PadWear_RR": pads[3], "BrakeFluidLevel": 1 if max(pads) > 92.0 else 0,
                "BrakeTemperature": self.r.brake_c}

    def ECM_Engine(self, t: float, k: int) -> dict[str, float]:
        rpm = 750.0 + 28.0 * self.r.speed(t) + self.rng.gauss(0.0, 15.0)
        return {"EngineSpeed": rpm, "CoolantTemp": 88.0 + self.rng.gauss(0.0, 1.0),
                "EngineRunning": 1}

    def BCM_LowVoltage(self, t: float, k: int) -> dict[str, float]:
        r = self.r
        return {"LvBatteryVoltage": r.lv_v, "CrankMinVoltage": r.crank_min_v,
                "CrankCount": r.crank_count}

    def BCM_Ambient(self, t: float, k: int) -> dict[str, float]:
        return {"AmbientTemperature": self.r.ambient_c}


_Producer = Callable[[_DayView, float, int], dict[str, float]]


@dataclass(frozen=True)
class _Frame:
    """A precomputed place in the snapshot; ``producer`` None marks a fault-code slot."""

    offset_s: float
    frame_id: int
    encoder: _Encoder
    producer: _Producer | None
    index: int
    message: str


class VehicleSimulator:
    """Simulates one vehicle of the reference fleet day by day.

    Args:
        spec: who the vehicle is and, optionally, its initial health.
        db: the reference DBC (see :func:`load_reference_dbc`).
        start_ts: Unix time of the first simulated day's midnight.
        days: how many days to simulate.
        snapshot_s: seconds of bus traffic per simulated day.

    Raises:
        ValueError: unknown variant or region, negative ``days`` or non-positive ``snapshot_s``.
    """

    def __init__(self, spec: VehicleSpec, db: Database, *, start_ts: float, days: int,
                 snapshot_s: float = 1.0) -> None:
        if days < 0 or snapshot_s <= 0:
            raise ValueError(f"need days >= 0 and snapshot_s > 0, got {days} and {snapshot_s}")
        self.spec, self.start_ts, self.days, self.snapshot_s = spec, start_ts, days, snapshot_s
        self.params = params_of(spec)
        self._plan = self._build_plan(db)
        self._truth: tuple[list[ComponentTruth], float] | None = None

    @property
    def model_name(self) -> str:
        """The vehicle's model, as it appears in ground truth and the register."""
        return self.params.model.name

    @property
    def end_ts(self) -> float:
        """Unix time at which the simulated window ends (midnight after the last day)."""
        return self.start_ts + self.days * DAY_S

    def snapshot_start(self, day: int) -> float:
        """Simulated Unix time at which day ``day``'s snapshot (and morning check) begins."""
        return (self.start_ts + day * DAY_S + SNAPSHOT_HOUR * 3600.0
                + self.params.snapshot_offset_s)

    def _carries(self, message: Message) -> bool:
        if message.name.startswith(_EV_ONLY_PREFIX):
            return self.params.is_ev
        return not (message.name in _ICE_ONLY and self.params.is_ev)

    def _build_plan(self, db: Database) -> list[_Frame]:
        plan: list[_Frame] = []
        messages = sorted((m for m in db.messages if self._carries(m)), key=lambda m: m.frame_id)
        for position, message in enumerate(messages):
            cycle = message.cycle_time / 1000.0 if message.cycle_time else self.snapshot_s
            phase = (position * 0.0007) % cycle
            encoder = _Encoder(message)
            repeats = max(1, math.ceil((self.snapshot_s - phase) / cycle))
            if message.name == _DTC_MESSAGE:
                plan += [_Frame(phase + k * cycle + j * 0.0002, message.frame_id, encoder, None, j,
                                message.name)
                         for k in range(repeats) for j in range(_MAX_DTCS)]
                continue
            producer: _Producer = getattr(_DayView, message.name)
            plan += [_Frame(phase + k * cycle, message.frame_id, encoder, producer, k,
                            message.name)
                     for k in range(repeats)]
        plan.sort(key=lambda f: (f.offset_s, f.frame_id))
        return plan

    def iter_days(self) -> Iterator[list[can.Message]]:
        """Yield one day's frames (in timestamp order) per simulated day.

        Every call starts the vehicle's life afresh, so two iterations give identical frames.
        """
        jitter = random.Random(f"fleetcare-jitter/{self.spec.seed}")
        for day in self.iter_readings():
            if day.readings is None:
                yield []
                continue
            view = _DayView(day.readings, self.params, jitter)
            yield self._frames(self.snapshot_start(day.state.day), view, day.codes)

    def iter_readings(self, orders: list[WorkshopOrder] | None = None) -> Iterator[SimDay]:
        """Yield each simulated day's hidden state, sensor readings and active fault codes.

        The one source of :meth:`iter_days` (the frames) and :func:`edge.sim.daily.landed_days`
        (what the backend lands, without frames); every call starts the life afresh. Given
        ``orders``, the workshop's orders opened within the window are added to it once the
        last day is out (as :func:`edge.sim.workshop.vehicle_orders` lists them).
        """
        model = HealthModel(self.params, self.spec.seed, self.start_ts)
        sensors, faults = Sensors(model.params, self.spec.seed), FaultCodes(self.params.is_ev)
        for _ in range(self.days):
            state = model.step()
            readings = sensors.read(state)
            codes = faults.today(state, readings)
            yield SimDay(state, readings if state.reports else None, codes)
        if orders is not None:
            orders += [o for o in model.orders if o.day < self.days]

    def slots(self, message: str) -> list[tuple[float, int]]:
        """Where in the snapshot (seconds from its start) the frames of ``message`` go, with
        each frame's index (a fault-code frame's: which active code it carries)."""
        return [(slot.offset_s, slot.index) for slot in self._plan if slot.message == message]

    def sensors(self, readings: DayReadings) -> Callable[[str, float, int], dict[str, float]]:
        """The values a message carries at a place in the snapshot (message name, seconds
        into the snapshot, its frame's index), exactly as its frames do; only for messages
        whose values need no per-frame jitter (the fast path's)."""
        view = _DayView(readings, self.params, _NO_JITTER)

        def values(message: str, t: float, k: int) -> dict[str, float]:
            produce: Callable[[float, int], dict[str, float]] = getattr(view, message)
            return produce(t, k)
        return values

    def _frames(self, t0: float, view: _DayView, codes: list[dict[str, float]]
                ) -> list[can.Message]:
        frames = vin_exchange(self.spec.vin, t0 - _VIN_LEAD_S) if self.spec.vin else []
        for slot in self._plan:
            if slot.producer is None:
                if slot.index >= len(codes):
                    continue
                values = codes[slot.index]
            else:
                values = slot.producer(view, slot.offset_s, slot.index)
            frames.append(can.Message(
                timestamp=t0 + slot.offset_s, arbitration_id=slot.frame_id,
                is_extended_id=False, dlc=8, data=slot.encoder.encode(values)))
        return frames

    def truth(self, msg_id: str) -> TruthRecord:
        """Ground truth: when each component fails (up to 730 days past the window).

        Computed by running the hidden model alone, with the same random stream the frames
        were made from, past the window with the vehicle's usual driving.
        """
        if self._truth is None:
            self._truth = (self._components(), self.end_ts)
        return TruthRecord(msg_id=msg_id, vehicle_id=self.spec.vehicle_id,
                           model=self.model_name, region=self.spec.region,
                           sim_start_ts=self.start_ts, sim_end_ts=self._truth[1],
                           components=list(self._truth[0]))

    def _components(self) -> list[ComponentTruth]:
        model = HealthModel(self.params, self.spec.seed, self.start_ts)
        failed_at: dict[str, float | None] = dict.fromkeys(COMPONENTS)
        end: DayState | None = None
        for day in range(self.days + TRUTH_HORIZON_DAYS + 1):
            state = model.step()
            if day == self.days:
                end = state
            for name, failed in zip(COMPONENTS, state.failed(self.params.is_ev), strict=True):
                if failed and failed_at[name] is None:
                    failed_at[name] = self.snapshot_start(day)
        assert end is not None
        health_at_end = {"traction_battery": end.soh, "lv_battery": end.dip_v,
                         "brakes": end.max_pad_wear}
        wanted = COMPONENTS if self.params.is_ev else COMPONENTS[1:]
        return [ComponentTruth(n, failed_at[n], health_at_end[n]) for n in wanted]

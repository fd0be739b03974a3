"""What a simulated vehicle's sensors report on one day: the one source of both outputs.

The hidden state (:mod:`edge.sim.wear`) is what is true; :class:`DayReadings` is what the
ECUs make of it that morning: the BMS's state-of-health estimate, the pad sensors' stages,
the BCM's cranking minimum, the outside temperature, the cell voltages. It is drawn once per
day from the vehicle's observation stream, and both outputs are made from it: the CAN frames
of :class:`edge.sim.simulator.VehicleSimulator` (which add per-frame jitter, from a stream of
their own, only to signals that move within a snapshot: currents, wheel and engine speeds)
and the fast daily path of :mod:`edge.sim.daily`, which lands the same values without a
frame. So the fast path is not a second model of the vehicle that could drift from the first.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from edge.sim.wear import DayState, VehicleParams

CELLS: Final = 16
RECALIBRATION_DAYS: Final = (30, 90)
"""Days between two recalibrations of the BMS's SoH estimate (drawn in this range)."""
ERROR_STEP_SD: Final = 0.25
"""Daily wander of the estimate's error (SoH points) between recalibrations."""
ERROR_PERSISTENCE: Final = 0.99
"""How much of yesterday's error stays (a slight pull back to the truth)."""
CALIBRATED_SD: Final = 0.3
"""The estimate's error just after a recalibration (SoH points)."""
PAD_STAGE_PCT: Final = 10.0
"""The pad wear sensors' step: they report 0, 10, ..., 100 %."""
PAD_STAGE_TOLERANCE_PCT: Final = 2.0
"""How early or late (wear %) each sensor switches to its next stage."""
_LV_CHARGING_V: Final = {"ev": 13.9, "ice": 14.1}
"""The 12 V bus while the DC/DC converter (EV) or the alternator (ICE) charges it."""


def ocv(soc: float) -> float:
    """Open-circuit voltage of one cell at a state of charge (%), a smooth NMC-like curve."""
    return 3.35 + 0.0085 * soc + 0.05 * math.tanh((soc - 10.0) / 8.0)


@dataclass(frozen=True, slots=True)
class DayReadings:
    """One day's sensor values, as the ECUs put them on the bus during the snapshot."""

    soc: float
    battery_c: float
    pack_mohm: float
    cells: tuple[float, ...]
    soh: float
    """The BMS's displayed state of health (an estimate of the true one)."""
    insulation_kohm: float
    pads: tuple[float, float, float, float]
    """The pad wear sensors' readings (%), front left, front right, rear left, rear right."""
    brake_c: float
    crank_min_v: float
    lv_v: float
    crank_count: int
    ambient_c: float
    """The outside temperature sensor at the morning snapshot."""
    odometer_km: float
    km: float
    speed0: float
    accel: float

    def speed(self, t: float) -> float:
        """Vehicle speed (km/h) ``t`` seconds into the snapshot."""
        return max(0.0, self.speed0 + self.accel * t)

    def odometer(self, t: float) -> float:
        """Odometer (km) ``t`` seconds into the snapshot: the day's start plus part of its
        distance, never more than the day's."""
        km = self.km
        return self.odometer_km + min(km, 0.4 * km + self.speed0 * t / 3600.0)


class Sensors:
    """One vehicle's ECUs: they turn each day's hidden state into :class:`DayReadings`.

    - The BMS *estimates* the state of health: the usable capacity (the permanent SoH plus
      what a rest lent back) plus an estimation error that wanders a little every day and is
      reset by a recalibration every :data:`RECALIBRATION_DAYS` (so the displayed value jumps
      by up to a few points then), and by a new pack.
    - The pad wear sensors report stages of :data:`PAD_STAGE_PCT` (each wheel's sensor
      switches a little early or late, up to :data:`PAD_STAGE_TOLERANCE_PCT`), not a percentage.
    - The BCM measures the cranking minimum; the outside sensor the morning's temperature.

    Draws come from the observation stream in a fixed order, once per day, and from the
    BMS's own stream, so neither depends on which days reach the backend.
    """

    def __init__(self, params: VehicleParams, seed: int) -> None:
        self.params = params
        self.obs = random.Random(f"fleetcare-obs/{seed}")
        self.cell_offsets = [self.obs.gauss(0.0, 1.0) for _ in range(CELLS)]
        self._bms = random.Random(f"fleetcare-bms/{seed}")
        self._pad_offsets = tuple(self._bms.uniform(-PAD_STAGE_TOLERANCE_PCT,
                                                    PAD_STAGE_TOLERANCE_PCT) for _ in range(4))
        self._error = self._bms.gauss(0.0, CALIBRATED_SD)
        self._calibrate_on = self._bms.randint(*RECALIBRATION_DAYS)

    def read(self, state: DayState) -> DayReadings:
        """The sensors' view of ``state`` (call once per day, in order)."""
        return read_day(state, self.params, self.obs, self.cell_offsets,
                        soh=state.usable_soh + self._estimate_error(state),
                        pads=self._pad_stages(state.pads))

    def _estimate_error(self, state: DayState) -> float:
        bms = self._bms
        wander, reset = bms.gauss(0.0, ERROR_STEP_SD), bms.gauss(0.0, CALIBRATED_SD)
        days = bms.randint(*RECALIBRATION_DAYS)
        if "traction_battery" in state.renewed or state.day >= self._calibrate_on:
            self._error, self._calibrate_on = reset, state.day + days
        else:
            self._error = ERROR_PERSISTENCE * self._error + wander
        return self._error

    def _pad_stages(self, pads: tuple[float, float, float, float]
                    ) -> tuple[float, float, float, float]:
        staged = [min(100.0, max(0.0, PAD_STAGE_PCT * math.floor((p + off) / PAD_STAGE_PCT)))
                  for p, off in zip(pads, self._pad_offsets, strict=True)]
        return (staged[0], staged[1], staged[2], staged[3])


def read_day(state: DayState, params: VehicleParams, obs: random.Random,
             cell_offsets: list[float], *, soh: float,
             pads: tuple[float, float, float, float]) -> DayReadings:
    """The sensors' view of ``state``, given the BMS's estimate and the pad sensors' stages;
    draws from ``obs`` in a fixed order, once per day."""
    gauss = obs.gauss
    speed0, accel = obs.uniform(20.0, 110.0), gauss(0.0, 1.0) * params.stop_go
    ambient = state.morning_c + gauss(0.0, 0.3)
    dip = state.dip_v + gauss(0.0, 0.04)
    soc = obs.uniform(35.0, 92.0)
    battery_c = min(45.0, max(5.0, state.ambient_c + 6.0)) + gauss(0.0, 1.0)
    spread = 0.004 + 0.0016 * max(0.0, 100.0 - state.soh)
    base = ocv(soc)
    brake_c = state.ambient_c + 30.0 + 40.0 * params.stop_go + gauss(0.0, 5.0)
    displayed = soh + gauss(0.0, 0.1)
    insulation = 3500.0 - 20.0 * (100.0 - state.soh) + gauss(0.0, 80.0)
    lv = _LV_CHARGING_V[params.variant] + gauss(0.0, 0.03)
    return DayReadings(
        soc=soc, battery_c=battery_c, pack_mohm=80.0 * (1.0 + (100.0 - state.soh) / 25.0),
        cells=tuple(base + spread * off for off in cell_offsets), soh=displayed,
        insulation_kohm=insulation, pads=pads, brake_c=brake_c,
        crank_min_v=dip, lv_v=lv, crank_count=state.crank_count + 1, ambient_c=ambient,
        odometer_km=state.odometer_km, km=state.km, speed0=speed0, accel=accel)

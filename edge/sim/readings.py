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


def read_day(state: DayState, params: VehicleParams, obs: random.Random,
             cell_offsets: list[float]) -> DayReadings:
    """The sensors' view of ``state``; draws from ``obs`` in a fixed order, once per day."""
    gauss = obs.gauss
    speed0, accel = obs.uniform(20.0, 110.0), gauss(0.0, 1.0) * params.stop_go
    ambient = state.morning_c + gauss(0.0, 0.3)
    dip = state.dip_v + gauss(0.0, 0.04)
    soc = obs.uniform(35.0, 92.0)
    battery_c = min(45.0, max(5.0, state.ambient_c + 6.0)) + gauss(0.0, 1.0)
    spread = 0.004 + 0.0016 * max(0.0, 100.0 - state.soh)
    base = ocv(soc)
    brake_c = state.ambient_c + 30.0 + 40.0 * params.stop_go + gauss(0.0, 5.0)
    soh = state.soh + gauss(0.0, 0.3)
    insulation = 3500.0 - 20.0 * (100.0 - state.soh) + gauss(0.0, 80.0)
    pads = tuple(p + gauss(0.0, 0.4) for p in state.pads)
    lv = _LV_CHARGING_V[params.variant] + gauss(0.0, 0.03)
    return DayReadings(
        soc=soc, battery_c=battery_c, pack_mohm=80.0 * (1.0 + (100.0 - state.soh) / 25.0),
        cells=tuple(base + spread * off for off in cell_offsets), soh=soh,
        insulation_kohm=insulation, pads=(pads[0], pads[1], pads[2], pads[3]), brake_c=brake_c,
        crank_min_v=dip, lv_v=lv, crank_count=state.crank_count + 1, ambient_c=ambient,
        odometer_km=state.odometer_km, km=state.km, speed0=speed0, accel=accel)

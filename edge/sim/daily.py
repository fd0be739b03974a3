"""The fast daily path: what the backend would land for a simulated vehicle, without frames.

Running agents, a broker and CAN frames costs about a second of machine time per vehicle-day
at full fidelity; a benchmark of 300 vehicles over two years and three seeds cannot afford
it. :func:`landed_days` walks the same simulated life (:meth:`VehicleSimulator.iter_readings`,
the very readings the frames are made from) and writes down what ``fleetcare ingest`` would
store from the agent's messages:

- ``telemetry`` rows ``(ts, signal, value)`` of the signals the daily features read, named as
  the reference rules publish them and rounded to the DBC's resolution exactly as encoding and
  decoding round them. Signals a snapshot holds constant get one row per day (the frames
  repeat the same value); speed and odometer, which move within the snapshot, get one row per
  frame, at the frame's time (braking energy comes from consecutive speed samples).
- ``fault_codes`` ``(ts, code, status, ecu, cleared)`` as the agent reports them: a code is
  reported when it or its status is new and again once :data:`DTC_REFRESH_S` has passed (the
  agent's default refresh of an hour, so an active code is reported once per simulated day).
- the workshop's ``orders`` (:func:`edge.sim.workshop.vehicle_orders`).

Days with no data (parked, gateway offline) have no rows, as on the real path.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Final

from cantools.database.can import Database, Signal

from edge.errors import DbcError
from edge.reference import reference_rules
from edge.rules import DTC_STATUS_BY_VALUE, load_rules
from edge.sim.faults import dtc_raw_to_code
from edge.sim.simulator import VehicleSimulator, VehicleSpec, load_reference_dbc
from edge.sim.wear import WorkshopOrder

DTC_REFRESH_S: Final = 3600.0
"""How long an agent waits before reporting a still-active code again (its default)."""
LANDED: Final = {
    "BMS_Health": ("StateOfHealth", "InsulationResistance", "CellTempMax"),
    "BMS_CellSummary": ("MinCellVoltage", "MaxCellVoltage"),
    "BCM_Brakes": ("PadWear_FL", "PadWear_FR", "PadWear_RL", "PadWear_RR"),
    "BCM_LowVoltage": ("LvBatteryVoltage", "CrankMinVoltage"),
    "BCM_Ambient": ("AmbientTemperature",),
    "VCU_Motion": ("VehicleSpeed", "Odometer"),
}
"""The DBC signals the fast path lands, by message: those the daily features read."""
EVERY_FRAME: Final = frozenset({"VCU_Motion"})
"""Messages whose values move within a snapshot: one row per frame, not per day."""
_DTC_MESSAGE: Final = "DIAG_DtcReport"

TelemetryRow = tuple[float, str, float]
FaultCodeRow = tuple[float, str, str, str, bool]


@dataclass(frozen=True, slots=True)
class LandedHistory:
    """What the backend holds for one vehicle after the simulated window."""

    vehicle_id: str
    telemetry: tuple[TelemetryRow, ...]
    """``(ts, signal, value)``, by time, as in the ``telemetry`` table."""
    fault_codes: tuple[FaultCodeRow, ...]
    """``(ts, code, status, ecu, cleared)``, by time, as in ``dtc_events``."""
    orders: tuple[WorkshopOrder, ...]
    """The workshop's orders opened within the window."""


@dataclass(frozen=True, slots=True)
class _Landing:
    """How one DBC signal lands: its published name, DBC limits and the rule's conversion."""

    name: str
    signal: str
    low: float
    high: float
    dbc_scale: float
    dbc_offset: float
    """The DBC's linear scaling (raw integers: every signal the fast path lands has them)."""
    scale: float | None
    offset: float

    def value(self, physical: float) -> float:
        """``physical`` after encoding (clamped, rounded to raw) and decoding, then the rule:
        the arithmetic of cantools' linear conversion, step for step, so the result is the
        decoder's to the last bit."""
        clamped = min(self.high, max(self.low, physical))
        raw = round((clamped - self.dbc_offset) / self.dbc_scale)
        decoded = float(raw * self.dbc_scale + self.dbc_offset)
        return decoded if self.scale is None else decoded * self.scale + self.offset


def _linear(signal: Signal) -> tuple[float, float]:
    """A signal's (scale, offset) as cantools converts it; raises if it is not linear."""
    conversion = signal.conversion
    if conversion.is_float or conversion.choices:
        raise DbcError(f"signal {signal.name} is not a plain linear integer: the fast path "
                       "cannot land it")
    return conversion.scale, conversion.offset


@functools.cache
def _landings() -> tuple[Database, dict[str, tuple[_Landing, ...]]]:
    """The reference DBC and, per landed message, how each of its signals lands."""
    db = load_reference_dbc()
    rules = {(r.message, r.signal): r for r in load_rules(reference_rules()).signals}
    table: dict[str, tuple[_Landing, ...]] = {}
    for message_name, signals in LANDED.items():
        message = db.get_message_by_name(message_name)
        landings = []
        for name in signals:
            signal = message.get_signal_by_name(name)
            rule = rules.get((message_name, name))
            low = -math.inf if signal.minimum is None else float(signal.minimum)
            high = math.inf if signal.maximum is None else float(signal.maximum)
            scale, offset = _linear(signal)
            landings.append(_Landing(
                rule.name if rule else f"{message_name}.{name}", name, low, high, scale,
                offset, rule.scale if rule else None, rule.offset if rule else 0.0))
        table[message_name] = tuple(landings)
    return db, table


def landed_days(spec: VehicleSpec, *, start_ts: float, days: int, snapshot_s: float = 1.0,
                dtc_refresh_s: float = DTC_REFRESH_S) -> LandedHistory:
    """What ``fleetcare ingest`` would hold for ``spec`` after ``days`` simulated days.

    The same spec, start, days and snapshot length as :class:`VehicleSimulator` give the
    values its frames carry, through the agent's decoder and the reference rules.

    Raises:
        ValueError: as :class:`VehicleSimulator` (unknown variant or region, bad counts).
    """
    db, landings = _landings()
    sim = VehicleSimulator(spec, db, start_ts=start_ts, days=days, snapshot_s=snapshot_s)
    slots = {m: sim.slots(m) for m in landings if sim.slots(m)}
    dtc_slots = sim.slots(_DTC_MESSAGE)
    telemetry: list[TelemetryRow] = []
    codes: list[FaultCodeRow] = []
    reported: dict[tuple[str, str, str], float] = {}
    orders: list[WorkshopOrder] = []
    for day in sim.iter_readings(orders):
        if day.readings is None:
            continue
        t0 = sim.snapshot_start(day.state.day)
        values = sim.sensors(day.readings)
        for message, places in slots.items():
            for offset, index in places if message in EVERY_FRAME else places[:1]:
                carried = values(message, offset, index)
                telemetry += [(t0 + offset, land.name, land.value(carried[land.signal]))
                              for land in landings[message]]
        for offset, index in dtc_slots:
            if index < len(day.codes):
                _report(codes, reported, t0 + offset, day.codes[index], dtc_refresh_s)
    telemetry.sort(key=lambda row: row[0])
    return LandedHistory(spec.vehicle_id, tuple(telemetry), tuple(codes), tuple(orders))


def _report(out: list[FaultCodeRow], reported: dict[tuple[str, str, str], float], ts: float,
            frame: dict[str, float], refresh_s: float) -> None:
    """The agent's rule: a code, status and ECU not reported within ``refresh_s`` is news."""
    key = (dtc_raw_to_code(int(frame["DtcCode"])), DTC_STATUS_BY_VALUE[int(frame["DtcStatus"])],
           f"0x{int(frame['EcuAddress']):02X}")
    last = reported.get(key)
    if last is None or ts - last >= refresh_s:
        reported[key] = ts
        out.append((ts, key[0], key[1], key[2], False))

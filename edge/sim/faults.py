"""The simulated ECUs' fault codes: when each comes on, and how it goes on the bus.

Each ECU judges by what it measures (:class:`edge.sim.readings.DayReadings`), not by the
hidden truth: the BMS by its own SoH estimate, the brake ECU by the pad sensors' stages, the
BCM by the cranking minimum it measured. So a code is as early or as late as the sensor
behind it, and a sudden failure, which no sensor sees coming, raises none. A code latches
once its condition holds on a day the car is awake (not parked), is reported *pending*, and
*stored* after :data:`DTC_STORED_AFTER_DAYS`; the workshop's replacement of the part clears it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from edge.sim.readings import DayReadings
from edge.sim.wear import DayState

DTC_STORED_AFTER_DAYS: Final = 3
ECU_ADDRESSES: Final = {"BMS": 0x44, "BCM": 0x40, "ESC": 0x29}
"""Diagnostic addresses our reference vehicle's ECUs report in ``EcuAddress``."""
COMPONENT_CODES: Final = {"traction_battery": "P0A80", "lv_battery": "P0562",
                          "brakes": "C1B00"}
"""The fault code each component raises as it wears out."""
P0A80_SOH: Final = 74.0
"""The BMS raises P0A80 once its SoH estimate is below this (%)."""
P0562_DIP_V: Final = 10.3
"""The BCM raises P0562 once a cranking minimum is below this (V)."""
C1B00_PAD_STAGE: Final = 90.0
"""The brake ECU raises C1B00 once a pad sensor reports this stage (%)."""
_DTC_LETTERS: Final = "PCBU"
_J2012: Final = re.compile(r"^[PCBU][0-3][0-9A-F]{3}$")


def dtc_code_to_raw(code: str) -> int:
    """Two-byte form of a J2012 code as in OBD-II mode 03 answers (``"P0A80"`` -> 0x0A80).

    Raises:
        ValueError: ``code`` is not upper-case J2012 (a letter P/C/B/U, then 0-3, then 3 hex).
    """
    if not _J2012.match(code):
        raise ValueError(f"fault code {code!r} is not upper-case SAE J2012 such as 'P0A80'")
    return (_DTC_LETTERS.index(code[0]) << 14) | int(code[1:], 16)


def dtc_raw_to_code(raw: int) -> str:
    """J2012 form of a two-byte OBD-II fault code (0x5B00 -> ``"C1B00"``)."""
    return f"{_DTC_LETTERS[(raw >> 14) & 0x3]}{raw & 0x3FFF:04X}"


@dataclass
class FaultCodes:
    """One vehicle's latched codes; :meth:`today` is called once per simulated day, in order."""

    is_ev: bool
    _first_seen: dict[str, int] = field(default_factory=dict)

    def today(self, state: DayState, readings: DayReadings) -> list[dict[str, float]]:
        """The ``DIAG_DtcReport`` values of every code active today (pending or stored)."""
        first_seen = self._first_seen
        for component in state.renewed:
            first_seen.pop(COMPONENT_CODES[component], None)
        awake = not state.parked  # a parked car's ECUs monitor nothing
        conditions = (
            ("P0A80", awake and self.is_ev and readings.soh < P0A80_SOH, "BMS"),
            ("P0562", awake and readings.crank_min_v < P0562_DIP_V, "BCM"),
            ("C1B00", awake and max(readings.pads) >= C1B00_PAD_STAGE, "ESC"),
        )
        active: list[dict[str, float]] = []
        for code, holds, ecu in conditions:
            if holds:
                first_seen.setdefault(code, state.day)
            if code in first_seen:
                stored = state.day - first_seen[code] >= DTC_STORED_AFTER_DAYS
                active.append({"DtcCode": dtc_code_to_raw(code), "DtcStatus": int(stored),
                               "EcuAddress": ECU_ADDRESSES[ecu]})
        for values in active:
            values["DtcCount"] = len(active)
        return active

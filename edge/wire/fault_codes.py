"""Descriptions of fault codes, in our own words, for the codes fleetcare's models rely on.

This is the one table of descriptions: the agent puts them in the fault-code events it
sends, and the backend's catalogue (``pipeline.features.fault_codes``, which adds component
and severity) shows them in features and leads, so a code reads the same on the gateway, in
the store and in the CRM. Every code that catalogue lists must have an entry here.

The table covers the traction battery, 12 V system and charging, brakes and ABS codes that
the models and leads use, and the few generic codes the backend catalogues; any other code
gets a description from its family (system letter, generic or manufacturer-specific, and for
generic powertrain codes the SAE J2012 range), so a description is never empty and never
invented for a specific code we do not know.
"""

from __future__ import annotations

from typing import Final

DESCRIPTIONS: Final[dict[str, str]] = {
    # Traction battery (hybrid / EV)
    "P0A7E": "Hybrid/EV battery pack over temperature",
    "P0A7F": "Hybrid/EV battery pack deterioration",
    "P0A80": "Replace hybrid/EV battery pack",
    "P0AA6": "Hybrid/EV battery voltage system isolation fault",
    "P0AFA": "Hybrid/EV battery system voltage low",
    # 12 V system and charging
    "P0560": "System voltage malfunction",
    "P0561": "System voltage unstable",
    "P0562": "System voltage low",
    "P0563": "System voltage high",
    "P0620": "Generator control circuit",
    "P0621": "Generator lamp control circuit",
    "P0622": "Generator field control circuit",
    # Brakes
    "P0571": "Brake switch A circuit",
    "P0572": "Brake switch A circuit low",
    "P0573": "Brake switch A circuit high",
    "C1B00": "Brake pad wear limit reached (manufacturer-specific code of the reference "
             "vehicle)",
    "C1B01": "Brake fluid level low (manufacturer-specific code of the reference vehicle)",
    "C1B02": "Brake fluid pressure loss (manufacturer-specific code of the reference "
             "vehicle)",
    # ABS
    "C0035": "Left front wheel speed sensor circuit",
    "C0040": "Right front wheel speed sensor circuit",
    "C0045": "Left rear wheel speed sensor circuit",
    "C0050": "Right rear wheel speed sensor circuit",
    "C0265": "ABS pump motor relay circuit open",
    # Generic codes seen on any car (catalogued by the backend, outside our components)
    "P0128": "Coolant thermostat below regulating temperature",
    "P0300": "Random/multiple cylinder misfire detected",
    "U0100": "Lost communication with ECM/PCM",
}

_SYSTEMS: Final = {"P": "Powertrain", "C": "Chassis", "B": "Body", "U": "Network"}

_P0_FAMILIES: Final = (
    (0x000, 0x0FF, "fuel and air metering, auxiliary emission controls"),
    (0x100, 0x2FF, "fuel and air metering"),
    (0x300, 0x3FF, "ignition system or misfire"),
    (0x400, 0x4FF, "auxiliary emission controls"),
    (0x500, 0x5FF, "vehicle speed, idle control and auxiliary inputs"),
    (0x600, 0x6FF, "computer and output circuits"),
    (0x700, 0x9FF, "transmission"),
    (0xA00, 0xCFF, "hybrid/EV propulsion"),
)


def describe(code: str) -> str:
    """Our description of an upper-case J2012 code, or of its family when not in the table."""
    known = DESCRIPTIONS.get(code)
    if known is not None:
        return known
    if len(code) != 5 or code[0] not in _SYSTEMS:
        return ""
    system = _SYSTEMS[code[0]]
    origin = {"0": "generic (SAE)", "1": "manufacturer-specific", "2": "generic (SAE)"}.get(
        code[1], "manufacturer-specific or SAE reserved")
    if code[:2] == "P0":
        family = _p0_family(code)
        if family:
            return f"Generic powertrain code: {family}"
    return f"{system} code, {origin}"


def _p0_family(code: str) -> str:
    try:
        rest = int(code[2:], 16)
    except ValueError:
        return ""
    for low, high, family in _P0_FAMILIES:
        if low <= rest <= high:
            return family
    return ""

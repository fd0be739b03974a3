"""Fault codes fleetcare understands: which component they implicate, what they mean, how bad.

The catalogue is small on purpose: it names the codes the reference vehicles raise for the
components we predict (``edge.wire.contract.COMPONENTS``) plus a few generic SAE J2012 codes seen on
any car, so features and leads can say which component a code points at. Codes we do not know
are kept in the store but count towards no component.

Severity drives the lead: ``critical`` means "stop driving, call the customer now, send
roadside assistance" (an insulation fault on the high-voltage pack, a brake fluid loss), not a
booking.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import polars as pl

SEVERITIES: Final = ("low", "medium", "high", "critical")
"""Severity levels, mildest first (their index is their rank)."""


@dataclass(frozen=True, slots=True)
class DtcInfo:
    """What one fault code means for maintenance.

    Attributes:
        code: upper-case SAE J2012 code, e.g. ``P0A80``.
        component: the predicted component it implicates, or None when it is outside
            fleetcare's components (it then produces no lead).
        description: a short text a service advisor understands.
        severity: one of :data:`SEVERITIES`.
    """

    code: str
    component: str | None
    description: str
    severity: str


def _entries() -> tuple[DtcInfo, ...]:
    return (
        DtcInfo("P0A80", "traction_battery", "Replace hybrid/EV battery pack", "high"),
        DtcInfo("P0A7F", "traction_battery", "Hybrid/EV battery pack deterioration", "high"),
        DtcInfo("P0AA6", "traction_battery",
                "Hybrid/EV battery voltage system isolation fault", "critical"),
        DtcInfo("P0AFA", "traction_battery", "Hybrid/EV battery system voltage low", "medium"),
        DtcInfo("P0562", "lv_battery", "System voltage low (12 V)", "medium"),
        DtcInfo("P0563", "lv_battery", "System voltage high (12 V)", "low"),
        DtcInfo("C1B00", "brakes", "Brake pad wear limit near", "medium"),
        DtcInfo("C1B01", "brakes", "Brake fluid level low", "critical"),
        DtcInfo("C1B02", "brakes", "Brake fluid pressure loss", "critical"),
        DtcInfo("C0035", "brakes", "Left front wheel speed sensor circuit", "medium"),
        DtcInfo("P0300", None, "Random/multiple cylinder misfire detected", "high"),
        DtcInfo("P0128", None, "Coolant thermostat below regulating temperature", "low"),
        DtcInfo("U0100", None, "Lost communication with ECM/PCM", "high"),
    )


CATALOG: Final[Mapping[str, DtcInfo]] = MappingProxyType({e.code: e for e in _entries()})
"""Every known code, keyed by its upper-case J2012 form."""


def lookup(code: str) -> DtcInfo | None:
    """The catalogue entry for ``code`` (case and surrounding space ignored), or None."""
    return CATALOG.get(code.strip().upper())


def severity_rank(severity: str) -> int:
    """Position of ``severity`` in :data:`SEVERITIES`, so severities compare as numbers.

    Raises:
        ValueError: ``severity`` is not one of :data:`SEVERITIES`.
    """
    try:
        return SEVERITIES.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}; use one of {SEVERITIES}") from None


def catalog_frame() -> pl.DataFrame:
    """The catalogue as a table (code, component, description, severity) for joins."""
    entries = list(CATALOG.values())
    return pl.DataFrame(
        {
            "code": [e.code for e in entries],
            "component": [e.component for e in entries],
            "description": [e.description for e in entries],
            "severity": [e.severity for e in entries],
        },
        schema={"code": pl.String, "component": pl.String, "description": pl.String,
                "severity": pl.String},
    )

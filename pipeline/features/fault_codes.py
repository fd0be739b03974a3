"""Fault codes fleetcare understands: which component they implicate, what they mean, how bad.

The catalogue is small on purpose: it names the codes the reference vehicles raise for the
components we predict (``edge.wire.contract.COMPONENTS``) plus a few generic SAE J2012 codes seen on
any car, so features and leads can say which component a code points at. Codes we do not know
are kept in the store but count towards no component.

Severity drives the lead: ``critical`` means "stop driving, call the customer now, send
roadside assistance" (an insulation fault on the high-voltage pack, a brake fluid loss), not a
booking.

The catalogue holds no descriptions of its own: each comes from the wire's one table
(:data:`edge.wire.fault_codes.DESCRIPTIONS`), the text the vehicle itself sends with the code,
so a lead never words a code differently from the gateway that raised it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import polars as pl

from edge.wire.fault_codes import DESCRIPTIONS
from pipeline.errors import TerminalPipelineError

SEVERITIES: Final = ("low", "medium", "high", "critical")
"""Severity levels, mildest first (their index is their rank)."""


@dataclass(frozen=True, slots=True)
class DtcInfo:
    """What one fault code means for maintenance.

    Attributes:
        code: upper-case SAE J2012 code, e.g. ``P0A80``; it must be in the wire's table.
        component: the predicted component it implicates, or None when it is outside
            fleetcare's components (it then produces no lead).
        severity: one of :data:`SEVERITIES`.
    """

    code: str
    component: str | None
    severity: str

    def __post_init__(self) -> None:
        # Checked when the catalogue is built (at import): a code without the wire's wording
        # would otherwise fail only once a vehicle raised it and a lead needed its text.
        if self.code not in DESCRIPTIONS:
            raise TerminalPipelineError(f"fault code {self.code} has no description in "
                                        "edge.wire.fault_codes.DESCRIPTIONS; add it there")

    @property
    def description(self) -> str:
        """A short text a service advisor understands: the wire's, never a second wording."""
        return DESCRIPTIONS[self.code]


def _entries() -> tuple[DtcInfo, ...]:
    return (
        DtcInfo("P0A80", "traction_battery", "high"),
        DtcInfo("P0A7F", "traction_battery", "high"),
        DtcInfo("P0AA6", "traction_battery", "critical"),
        DtcInfo("P0AFA", "traction_battery", "medium"),
        DtcInfo("P0562", "lv_battery", "medium"),
        DtcInfo("P0563", "lv_battery", "low"),
        DtcInfo("C1B00", "brakes", "medium"),
        DtcInfo("C1B01", "brakes", "critical"),
        DtcInfo("C1B02", "brakes", "critical"),
        DtcInfo("C0035", "brakes", "medium"),
        DtcInfo("P0300", None, "high"),
        DtcInfo("P0128", None, "low"),
        DtcInfo("U0100", None, "high"),
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

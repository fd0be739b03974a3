"""Where the register's VINs must carry the check digit.

Every VIN is 17 characters of digits and capital letters without I, O and Q
(:mod:`edge.wire.vin`). North America (49 CFR 565) also makes the ninth character a check
digit; Europe and most other markets leave it to the maker, so checking it there would refuse
valid VINs. Which regions carry it is therefore a policy of the import, given as the values of
the ``region`` column that stand for such a market (``--vin-check-regions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge.wire.vin import CHECK_POSITION, check_digit, vin_problem

CHECK_DIGIT_REGIONS: Final = frozenset({"na", "north-america", "north_america", "us", "usa",
                                        "ca", "canada", "mx", "mexico"})
"""Region values (compared in lower case) whose VINs carry the check digit by default. The
simulator's regions (north, central, south) are not among them."""
DEFAULT_CHECK_REGIONS: Final = ",".join(sorted(CHECK_DIGIT_REGIONS))


@dataclass(frozen=True, slots=True)
class VinPolicy:
    """Which regions' VINs must carry the check digit; ``every_region`` checks all."""

    regions: frozenset[str] = CHECK_DIGIT_REGIONS
    every_region: bool = False

    @classmethod
    def parse(cls, text: str) -> VinPolicy:
        """``*`` (every region), an empty string (none) or comma-separated region values."""
        if text.strip() == "*":
            return cls(frozenset(), every_region=True)
        return cls(frozenset(r.strip().lower() for r in text.split(",") if r.strip()))

    def checks(self, region: str) -> bool:
        """Whether a vehicle of ``region`` must have a valid check digit."""
        return self.every_region or region.strip().lower() in self.regions


def register_vin_problem(vin: str, region: str, policy: VinPolicy) -> str | None:
    """What is wrong with ``vin`` for a vehicle of ``region`` (None: nothing)."""
    problem = vin_problem(vin)
    if problem is not None:
        return problem
    if policy.checks(region):
        expected = check_digit(vin)
        if vin[CHECK_POSITION] != expected:
            return (f"VIN {vin!r} fails the check digit region {region!r} requires: its ninth "
                    f"character is {vin[CHECK_POSITION]!r}, the others give {expected!r}")
    return None


DEFAULT_POLICY: Final = VinPolicy()
"""The check digit in :data:`CHECK_DIGIT_REGIONS` only."""

"""Vehicle identification numbers (ISO 3779) as both sides of the wire read them.

A VIN is 17 characters of digits and capital letters other than I, O and Q. That much holds
for every VIN in the world, and it is all the wire contract asks of a VIN an agent read from
a bus, but for one thing: 17 times the same character (``00000000000000000``) is what an ECU
that was never programmed with a VIN answers, not a car's identity, and is refused as such.

The ninth character is a *check digit* only where the market requires one (North America,
and makers who use it everywhere): a weighted sum of the other characters modulo 11, ``X``
standing for 10. A European or Asian VIN may carry any character there (the shared J1939
demo truck sends ``1L06130RELP969468``), so the check digit is a separate test that the
register's import applies where its region asks for it, and that the simulator's invented
VINs always pass.
"""

from __future__ import annotations

import re
from typing import Final

VIN_LENGTH: Final = 17
VIN_CHARACTERS: Final = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
"""Digits and capital letters without I, O and Q (they read like 1 and 0)."""
_VIN: Final = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_VALUES: Final = {
    **{digit: int(digit) for digit in "0123456789"},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7, "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
"""The value of each character in the check-digit sum (the letters' transliteration)."""
_WEIGHTS: Final = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
CHECK_POSITION: Final = 8
"""Index (0-based) of the check digit: the ninth character."""


def vin_problem(text: str) -> str | None:
    """What is wrong with ``text`` as a VIN (None: it is one), in words a person can act on."""
    if len(text) != VIN_LENGTH:
        return f"VIN {text!r} has {len(text)} characters, a VIN has {VIN_LENGTH}"
    if not _VIN.match(text):
        return (f"VIN {text!r} has characters outside 0-9 and A-Z "
                f"(I, O and Q are not allowed)")
    if len(set(text)) == 1:
        return f"VIN {text!r} is one character 17 times: an unprogrammed ECU's placeholder"
    return None


def is_vin(text: str) -> bool:
    """Whether ``text`` is 17 valid VIN characters (the check digit is not looked at)."""
    return vin_problem(text) is None


def check_digit(vin: str) -> str:
    """The check digit ``vin`` should carry in its ninth place (``0``-``9`` or ``X``).

    Raises:
        ValueError: ``vin`` is not 17 valid VIN characters.
    """
    problem = vin_problem(vin)
    if problem is not None:
        raise ValueError(problem)
    remainder = sum(_VALUES[c] * w for c, w in zip(vin, _WEIGHTS, strict=True)) % 11
    return "X" if remainder == 10 else str(remainder)


def has_valid_check_digit(vin: str) -> bool:
    """Whether ``vin`` is a VIN whose ninth character is its check digit."""
    return is_vin(vin) and vin[CHECK_POSITION] == check_digit(vin)


def with_check_digit(vin: str) -> str:
    """``vin`` with its ninth character replaced by the check digit the other 16 give.

    Raises:
        ValueError: ``vin`` is not 17 valid VIN characters.
    """
    digit = check_digit(vin)  # the ninth character's weight is 0: it does not count itself
    return vin[:CHECK_POSITION] + digit + vin[CHECK_POSITION + 1:]

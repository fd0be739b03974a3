"""The diagnostic frame taps an agent can run beside its DBC decoder, by name.

``make_taps(["obd", "j1939", "uds"])`` builds them; ``uds`` reads every UDS map edge ships
(``dbc/uds`` in the repository) unless maps are named (``uds:nissan_leaf``). The taps expose
what a ``TapResult`` cannot carry: ``ObdTap.vin`` and ``J1939Tap.vin`` (validated, 17
characters; also handed to ``on_vin`` when it changes, with how it was read) and their
counters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from edge.diag.j1939_tap import J1939Tap
from edge.diag.obd_tap import ObdTap
from edge.diag.uds_map import load_did_map
from edge.diag.uds_tap import UdsTap
from edge.errors import ConfigError
from edge.reference import uds_map_paths
from edge.tap import FrameTap

TAP_NAMES = ("obd", "j1939", "uds")
OBD_VIN: Final = "obd_mode09"
J1939_VIN: Final = "j1939_feec"
"""How each tap reads a VIN, in the wire contract's words (``contract.VIN_SOURCES``)."""

VinSink = Callable[[str, str], None]
"""Takes a VIN and how it was read."""


def make_taps(names: Sequence[str], *, on_vin: VinSink | None = None) -> list[FrameTap]:
    """One tap per name: ``obd``, ``j1939``, ``uds`` or ``uds:<map>[,<map>...]``.

    ``on_vin`` is called with a valid VIN and its source (:data:`OBD_VIN`, :data:`J1939_VIN`)
    whenever the OBD-II or J1939 tap hears a new one.

    Raises:
        ConfigError: a name is not one of the valid ones, or a UDS map cannot be read.
    """
    taps: list[FrameTap] = []
    for name in names:
        kind, _, arg = name.strip().partition(":")
        if kind == "obd" and not arg:
            taps.append(ObdTap(_from(on_vin, OBD_VIN)))
        elif kind == "j1939" and not arg:
            taps.append(J1939Tap(_from(on_vin, J1939_VIN)))
        elif kind == "uds":
            taps.append(_uds_tap(arg))
        else:
            raise ConfigError(
                f"unknown diagnostic tap {name!r}; valid taps are {', '.join(TAP_NAMES)} "
                f"(and uds:<map> for the shipped maps: "
                f"{', '.join(p.stem for p in uds_map_paths())})"
            )
    return taps


def _from(on_vin: VinSink | None, source: str) -> Callable[[str], None] | None:
    """A tap's ``on_vin`` that tells ``on_vin`` where the VIN came from."""
    if on_vin is None:
        return None
    sink = on_vin
    return lambda vin: sink(vin, source)


def _uds_tap(arg: str) -> UdsTap:
    if arg:
        return UdsTap([load_did_map(m) for m in arg.split(",")])
    return UdsTap([load_did_map(p) for p in uds_map_paths()])

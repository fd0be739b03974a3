"""Frame taps: decoders beside the DBC path that see every frame the agent reads.

This is the one tap interface: the diagnostics package (``edge/diag``) implements it for
OBD-II, J1939 transport and UDS (each tap class names :class:`FrameTap` as its base, so the
type checker holds it to the signature), and the agent knows nothing else about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import can

from edge.wire import contract


@dataclass(frozen=True, slots=True)
class TapResult:
    """What a frame tap found in a frame: samples ``(ts, signal, value)`` and fault codes."""

    samples: tuple[tuple[float, str, float], ...] = ()
    dtcs: tuple[contract.DtcEvent, ...] = ()


@runtime_checkable
class FrameTap(Protocol):
    """A decoder beside the DBC path that sees every frame (OBD-II, J1939 transport, UDS).

    Taps keep their own state (multi-frame reassembly, request/response pairing) and must
    never raise on a bad frame: count it and return None.
    """

    def feed(self, frame: can.Message) -> TapResult | None:
        """Look at one frame; return what it completed, if anything."""

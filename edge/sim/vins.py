"""The VIN of a simulated vehicle, and the diagnostic exchange that puts it on its bus.

A simulated vehicle's VIN depends on the fleet's seed and its vehicle id alone, so the
register the simulator writes (``vehicles.csv``) and the VIN its bus answers agree without
either reading the other. Its ninth character is the ISO 3779 check digit, so it passes the
import's check in any region.

On the bus the VIN is what a gateway's OBD-II reader asks for at every wake-up: a functional
mode 09 PID 02 request, and the engine ECU's 20-byte answer over ISO-TP (a first frame, the
tester's flow control, two consecutive frames). The agent's passive OBD-II tap hears the
answer like any other; the frames are unknown to the reference DBC and counted as such.
"""

from __future__ import annotations

import random
from typing import Final

import can

from edge.wire.vin import VIN_CHARACTERS, VIN_LENGTH, with_check_digit

REQUEST_ID: Final = 0x7DF
"""Functional OBD-II request (11-bit)."""
ANSWER_ID: Final = 0x7E8
"""The engine ECU's OBD-II answer id; its physical request id (flow control) is 0x7E0."""
FLOW_CONTROL_ID: Final = 0x7E0
FRAME_GAP_S: Final = 0.002
"""Time between the frames of the exchange."""


def simulated_vin(seed: int, vehicle_id: str) -> str:
    """The VIN of vehicle ``vehicle_id`` in the fleet of seed ``seed`` (check digit valid)."""
    rng = random.Random(f"{seed}:{vehicle_id}")
    return with_check_digit("".join(rng.choice(VIN_CHARACTERS) for _ in range(VIN_LENGTH)))


def vin_exchange(vin: str, t0: float) -> list[can.Message]:
    """The frames of a mode 09 PID 02 request and its answer, the first at ``t0``."""
    answer = b"\x49\x02\x01" + vin.encode("ascii")
    frames = [
        (REQUEST_ID, b"\x02\x09\x02" + bytes(5)),
        (ANSWER_ID, bytes([0x10, len(answer)]) + answer[:6]),
        (FLOW_CONTROL_ID, b"\x30\x00\x00" + bytes(5)),
        (ANSWER_ID, b"\x21" + answer[6:13]),
        (ANSWER_ID, b"\x22" + answer[13:20]),
    ]
    return [can.Message(timestamp=t0 + i * FRAME_GAP_S, arbitration_id=can_id,
                        is_extended_id=False, dlc=8, data=data)
            for i, (can_id, data) in enumerate(frames)]

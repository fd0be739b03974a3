"""From python-OBD's parsed messages back to complete answers, rebuilt by our own code.

python-OBD groups an adapter's lines into one message per ECU. On CAN it has already
reassembled them, and trimmed mode 03 answers by a count byte that not every ECU sends, so the
answer is rebuilt here from the frames (PCI byte and data, header known), which python-OBD
keeps untouched. Legacy protocols (J1850, ISO 9141, KWP) have no ISO-TP, so their message
data is used as it is. Nothing here imports python-OBD: messages are read by attribute only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from edge.diag.obd_tap import ecu_of_response
from edge.diag.reassembly import Reassembler


def answers_of(messages: Iterable[Any]) -> list[tuple[str, bytes]]:
    """``(ecu, answer)`` for each python-OBD message; CAN answers rebuilt from their frames."""
    answers: list[tuple[str, bytes]] = []
    for message in messages:
        frames = list(getattr(message, "frames", ()))
        if frames and getattr(frames[0], "type", None) is not None:
            answers += _rebuild(frames)
        else:
            tx_id = getattr(message, "tx_id", None)
            answers.append((f"0x{tx_id:02X}" if tx_id is not None else "",
                            bytes(message.data)))
    return answers


def _rebuild(frames: list[Any]) -> list[tuple[str, bytes]]:
    """Reassemble one ECU's CAN frames: the header from ``raw``, PCI and data from ``data``."""
    reassembler = Reassembler()
    answers = []
    for frame in frames:
        raw = str(frame.raw)
        extended = len(raw) % 2 == 0          # 29-bit headers have 8 hex digits, 11-bit 3
        try:
            can_id = int(raw[:8] if extended else raw[:3], 16)
        except ValueError:
            continue
        payload = reassembler.feed(can_id, bytes(frame.data))
        ecu = ecu_of_response(can_id, extended)
        if payload is not None and ecu is not None:
            answers.append((ecu, payload))
    return answers

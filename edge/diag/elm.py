"""The ELM327 path: an adapter on a serial device, a pty or a ``socket://host:port`` URL.

python-OBD (``obd.elm327.ELM327``) opens the port, initialises the adapter and picks the
protocol; we use it as a transport only. Every answer is rebuilt from the adapter's raw frames
with our own ISO-TP reassembly and decoded by the same parsers as the native CAN path, because
python-OBD's decoders lose information: its string decoder strips leading and trailing
``0``/``1``/``2`` from the VIN, it trims mode 03 answers by a count byte some ECUs do not send,
and it has no command for mode 0A.

On a ``socket://`` URL python-OBD must be given a baud rate: without one it probes rates by
changing the port's speed, which breaks the TCP connection, so 38400 is used by default there.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

from edge.diag.errors import DiagLinkError
from edge.diag.obd_tap import ecu_of_response
from edge.diag.reassembly import Reassembler
from edge.errors import ConfigError

log = logging.getLogger(__name__)

SOCKET_BAUDRATE = 38400
_CAN_PROTOCOLS = {"6": (False, 3), "7": (True, 8), "8": (False, 3), "9": (True, 8),
                  "A": (True, 8), "B": (False, 3), "C": (False, 3)}
"""ELM protocol id -> (29-bit ids, header length in hex digits) for the CAN protocols."""


class ElmConnection:
    """One ELM327 adapter; ``query`` sends a request and returns ``(ecu, answer)`` pairs.

    Raises:
        DiagLinkError: the adapter or the car does not answer.
    """

    def __init__(self, port: str, *, baudrate: int | None = None, protocol: str | None = None,
                 timeout: float = 5.0) -> None:
        try:  # python-OBD (GPL-2.0-only) is an extra, loaded only where the ELM path runs
            from obd.elm327 import ELM327
            from obd.utils import OBDStatus
        except ImportError as exc:
            raise ConfigError(
                "the ELM327 path needs python-OBD: pip install 'fleetcare[elm]'") from exc

        if baudrate is None and port.startswith("socket://"):
            baudrate = SOCKET_BAUDRATE
        self.port = port
        try:
            self._elm = ELM327(port, baudrate, protocol, timeout, check_voltage=False)
        except Exception as exc:  # pyserial and socket errors of every kind
            raise DiagLinkError(f"cannot open ELM327 adapter at {port}: {exc}") from exc
        if self._elm.status() != OBDStatus.CAR_CONNECTED:
            status = self._elm.status()
            self._elm.close()
            raise DiagLinkError(f"ELM327 at {port}: {status} (is the ignition on?)")

    @property
    def protocol(self) -> str:
        """The protocol the adapter found, e.g. ``ISO 15765-4 (CAN 11/500)``."""
        return str(self._elm.protocol_name())

    def query(self, request: bytes,
              expect: Collection[str] | None = None) -> list[tuple[str, bytes]]:
        """Send one request (``b"\\x01\\x0c"``); the complete answer of each ECU.

        ``expect`` is not needed here: the adapter itself waits for the answers.
        """
        messages = self._elm.send_and_parse(request.hex().upper().encode()) or []
        can = _CAN_PROTOCOLS.get(str(self._elm.protocol_id()))
        answers: list[tuple[str, bytes]] = []
        for message in messages:
            if can is None:
                ecu = f"0x{message.tx_id:02X}" if message.tx_id is not None else ""
                answers.append((ecu, bytes(message.data)))
                continue
            answers += _rebuild(message.frames, *can)
        return answers

    def close(self) -> None:
        """Release the adapter."""
        self._elm.close()

    def __enter__(self) -> ElmConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rebuild(frames: Sequence[Any], extended: bool, digits: int) -> list[tuple[str, bytes]]:
    """Reassemble one ECU's raw CAN frames (header + PCI + data) into complete answers."""
    reassembler = Reassembler()
    answers = []
    for frame in frames:
        raw = str(frame.raw)
        try:
            can_id, data = int(raw[:digits], 16), bytes.fromhex(raw[digits:])
        except ValueError:
            continue
        payload = reassembler.feed(can_id, data)
        ecu = ecu_of_response(can_id, extended)
        if payload is not None and ecu is not None:
            answers.append((ecu, payload))
    return answers

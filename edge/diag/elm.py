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
from collections.abc import Collection

from edge.diag.elm_answers import answers_of
from edge.diag.errors import DiagLinkError
from edge.errors import ConfigError

log = logging.getLogger(__name__)

SOCKET_BAUDRATE = 38400


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
        return answers_of(messages)

    def close(self) -> None:
        """Release the adapter."""
        self._elm.close()

    def __enter__(self) -> ElmConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


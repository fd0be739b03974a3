"""The native CAN path: OBD-II and UDS over ISO-TP (can-isotp) on a python-can bus, no adapter.

A functional request (0x7DF, or 0x18DB33F1 on 29-bit buses) is one single frame that every
emission-relevant ECU answers from its own id, possibly with a multi-frame answer that needs
flow control back to that ECU. So the link keeps one can-isotp stack per ECU (11-bit: the eight
pairs 0x7E0/0x7E8 .. 0x7E7/0x7EF; 29-bit: 0x18DA<ecu>F1 / 0x18DAF1<ecu> for the ECU addresses
given), sends the functional frame itself, and collects answers until the timeout. Once the
answering ECUs are known (every OBD-II ECU answers PID 0x00, so they are learned from that
request), a request returns as soon as all of them have answered. An ECU that
answers "response pending" (7F xx 78) gets the extended P2* time before it is given up.

The link reads the bus through its own ``can.Notifier``, so give it a bus object of its own
(a second ``virtual`` or socketcan bus instance sees the same traffic).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

import can
import isotp

FUNCTIONAL_11 = 0x7DF
FUNCTIONAL_29 = 0x18DB33F1
TESTER_ADDRESS = 0xF1
DEFAULT_29BIT_ECUS = (0x10, 0x18, 0x28)
"""29-bit ECU addresses asked by default: engine, transmission, hybrid/EV controller."""

STACK_PARAMS: dict[str, Any] = {
    "tx_padding": 0x00, "tx_data_min_length": 8, "stmin": 0, "blocksize": 0,
    "rx_flowcontrol_timeout": 1000, "rx_consecutive_frame_timeout": 1000,
}


class IsoTpLink:
    """OBD-II requests over ISO-TP; ``query`` returns each answering ECU's complete answer."""

    def __init__(self, bus: can.BusABC, *, extended: bool = False,
                 ecus: Sequence[int] = DEFAULT_29BIT_ECUS, timeout: float = 1.0,
                 pending_timeout: float = 5.0) -> None:
        self._bus = bus
        self._extended = extended
        self._timeout = timeout
        self._pending_timeout = pending_timeout
        self._notifier = can.Notifier(bus, [], timeout=0.05)
        self._stacks: dict[str, isotp.NotifierBasedCanStack] = {}
        for ecu, address in self._addresses(ecus):
            stack = isotp.NotifierBasedCanStack(bus, self._notifier, address=address,
                                                params=STACK_PARAMS)
            stack.start()
            self._stacks[ecu] = stack
        self.responders: set[str] = set()

    @property
    def protocol(self) -> str:
        """The protocol name, as ELM327 adapters report it."""
        return "ISO 15765-4 (CAN 29/500)" if self._extended else "ISO 15765-4 (CAN 11/500)"

    def _addresses(self, ecus: Sequence[int]) -> list[tuple[str, isotp.Address]]:
        if not self._extended:
            return [(f"0x{0x7E8 + n:03X}",
                     isotp.Address(isotp.AddressingMode.Normal_11bits, txid=0x7E0 + n,
                                   rxid=0x7E8 + n)) for n in range(8)]
        return [(f"0x{ecu:02X}",
                 isotp.Address(isotp.AddressingMode.NormalFixed_29bits, target_address=ecu,
                               source_address=TESTER_ADDRESS)) for ecu in ecus]

    def query(self, request: bytes,
              expect: Collection[str] | None = None) -> list[tuple[str, bytes]]:
        """Send ``request`` functionally (single frame, at most 7 bytes) and collect answers.

        ``expect`` names the ECUs known to answer this request (say, those that claim the PID):
        collection ends when all of them have answered, or at the timeout. By default, the ECUs
        that answered PID 0x00.
        """
        if not 0 < len(request) <= 7:
            raise ValueError("a functional request is one single frame of 1 to 7 bytes")
        for stack in self._stacks.values():
            while stack.available():
                stack.recv()
        functional = FUNCTIONAL_29 if self._extended else FUNCTIONAL_11
        data = bytes([len(request)]) + request
        self._bus.send(can.Message(arbitration_id=functional, is_extended_id=self._extended,
                                   data=data.ljust(8, b"\x00")))
        answers = self._collect(set(self.responders if expect is None else expect))
        if request == b"\x01\x00":
            self.responders |= {ecu for ecu, _ in answers}
        return answers

    def _collect(self, expect: set[str]) -> list[tuple[str, bytes]]:
        start = time.monotonic()
        deadline = {ecu: start + self._timeout for ecu in self._stacks}
        answers: dict[str, bytes] = {}
        while True:
            now = time.monotonic()
            for ecu, stack in self._stacks.items():
                payload = stack.recv() if ecu not in answers else None
                if payload is None:
                    continue
                if len(payload) >= 3 and payload[0] == 0x7F and payload[2] == 0x78:
                    deadline[ecu] = now + self._pending_timeout
                    continue
                answers[ecu] = bytes(payload)
            waiting = [e for e in self._stacks if e not in answers and deadline[e] > now]
            everyone = expect and expect <= answers.keys()
            if not waiting or everyone:
                break
            time.sleep(0.002)
        return sorted(answers.items())

    def close(self) -> None:
        """Stop the stacks and the notifier (the bus stays open: it is the caller's)."""
        for stack in self._stacks.values():
            stack.stop()
        self._notifier.stop()

    def __enter__(self) -> IsoTpLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

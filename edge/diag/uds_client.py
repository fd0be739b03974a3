"""Reading battery data actively: UDS ReadDataByIdentifier (0x22, or 0x21) over ISO-TP.

One physical can-isotp stack to the make's battery ECU (ids from its DID map). Answers may
span many frames (a Leaf's cell voltages are about 200 bytes); an ECU that answers "response
pending" (7F xx 78) is given P2* before the read fails. Decoding is the map's, the same as the
passive UDS tap's.
"""

from __future__ import annotations

import time

import can
import isotp

from edge.diag.errors import DiagLinkError
from edge.diag.isotp_link import STACK_PARAMS
from edge.diag.uds_map import DidMap, parse_uds_answer


class UdsClient:
    """Reads a make's identifiers from its battery ECU over a bus of its own."""

    def __init__(self, bus: can.BusABC, did_map: DidMap, *, timeout: float = 1.0,
                 pending_timeout: float = 5.0) -> None:
        self.did_map = did_map
        self._timeout = timeout
        self._pending_timeout = pending_timeout
        mode = (isotp.AddressingMode.Normal_29bits if did_map.extended_id
                else isotp.AddressingMode.Normal_11bits)
        address = isotp.Address(mode, txid=did_map.request_id, rxid=did_map.response_id)
        self._notifier = can.Notifier(bus, [], timeout=0.05)
        self._stack = isotp.NotifierBasedCanStack(bus, self._notifier, address=address,
                                                  params=STACK_PARAMS)
        self._stack.start()

    def request(self, request: bytes) -> bytes:
        """Send one request and return the final answer (positive or negative).

        Raises:
            DiagLinkError: no answer within the timeout.
        """
        while self._stack.available():
            self._stack.recv()
        self._stack.send(request)
        deadline = time.monotonic() + self._timeout
        while True:
            answer = self._stack.recv(block=True, timeout=max(0.0, deadline - time.monotonic()))
            if answer is None:
                raise DiagLinkError(f"{self.did_map.make}: no answer to {request.hex()} on "
                                    f"0x{self.did_map.response_id:X}")
            if len(answer) >= 3 and answer[0] == 0x7F and answer[2] == 0x78:
                deadline = time.monotonic() + self._pending_timeout
                continue
            return bytes(answer)

    def read(self, service: int, ident: int) -> list[tuple[str, float]]:
        """Read one identifier and decode it with the map.

        Raises:
            DiagLinkError: no answer.
            DiagParseError: a refusal, or an answer the map cannot decode.
        """
        size = 2 if service == 0x22 else 1
        answer = self.request(bytes([service]) + ident.to_bytes(size, "big"))
        return parse_uds_answer(answer, self.did_map)

    def read_all(self) -> list[tuple[str, float]]:
        """Every identifier in the map, in map order."""
        values: list[tuple[str, float]] = []
        for did in self.did_map.dids.values():
            values += self.read(did.service, did.ident)
        return values

    def close(self) -> None:
        """Stop the stack and the notifier (the bus is the caller's)."""
        self._stack.stop()
        self._notifier.stop()

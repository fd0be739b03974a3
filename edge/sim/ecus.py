"""Simulated ECUs answering OBD-II and UDS over ISO-TP on a python-can bus.

For tests, demos and benchmarks of the native CAN path without a vehicle: each ECU has its
own bus object, a can-isotp stack for its physical ids and a listener for functional requests,
and answers from a worker thread, so a slow ECU (``delay``) or one that first says "response
pending" (``pending``) never holds up the others. Like older ECUs it refuses a mode 01 request
with more than six PIDs.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import can
import isotp

from edge.diag.isotp_link import FUNCTIONAL_11, FUNCTIONAL_29, STACK_PARAMS, TESTER_ADDRESS
from edge.diag.pids import SUPPORT_PIDS


@dataclass
class EcuBehaviour:
    """What a simulated ECU knows and how it answers."""

    pids: dict[int, bytes] = field(default_factory=dict)
    dtcs: dict[int, list[int]] = field(default_factory=dict)
    vin: str | None = None
    uds: dict[bytes, bytes] = field(default_factory=dict)
    count_byte: bool = True
    delay: float = 0.0
    pending: bool = False
    max_pids: int = 6


class SimulatedEcu:
    """One ECU on a python-can bus; ``answered`` counts the requests it answered."""

    def __init__(self, channel: str, behaviour: EcuBehaviour, *, index: int = 0,
                 extended: bool = False, address: int = 0x10,
                 ids: tuple[int, int] | None = None, interface: str = "virtual") -> None:
        self.behaviour = behaviour
        self.answered = 0
        self._bus = can.Bus(interface=interface, channel=channel)
        self._notifier = can.Notifier(self._bus, [], timeout=0.05)
        if ids is not None:
            addr = isotp.Address(isotp.AddressingMode.Normal_11bits, txid=ids[1], rxid=ids[0])
        elif extended:
            addr = isotp.Address(isotp.AddressingMode.NormalFixed_29bits,
                                 target_address=TESTER_ADDRESS, source_address=address)
        else:
            addr = isotp.Address(isotp.AddressingMode.Normal_11bits, txid=0x7E8 + index,
                                 rxid=0x7E0 + index)
        self._stack = isotp.NotifierBasedCanStack(self._bus, self._notifier, address=addr,
                                                  params=STACK_PARAMS)
        self._functional = (FUNCTIONAL_29, True) if extended else (FUNCTIONAL_11, False)
        self._requests: queue.Queue[bytes] = queue.Queue(maxsize=100)
        self._stop = threading.Event()
        self._notifier.add_listener(self._on_frame)
        self._stack.start()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="ecusim")
        self._thread.start()

    def _on_frame(self, msg: can.Message) -> None:
        if (msg.arbitration_id, msg.is_extended_id) != self._functional or not msg.data:
            return
        size = msg.data[0]
        if 0 < size <= 7 and not self._requests.full():
            self._requests.put(bytes(msg.data[1:1 + size]))

    def _serve(self) -> None:
        while not self._stop.is_set():
            physical = self._stack.recv(block=True, timeout=0.01)
            if physical is not None:
                self._requests.put(bytes(physical))
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                continue
            answer = answer_for(self.behaviour, request)
            if answer is None:
                continue
            if self.behaviour.pending:
                self._stack.send(bytes([0x7F, request[0], 0x78]))
            if self.behaviour.delay:
                time.sleep(self.behaviour.delay)
            self._stack.send(answer)
            self.answered += 1

    def stop(self) -> None:
        """Stop answering and release the bus."""
        self._stop.set()
        self._thread.join(5)
        self._stack.stop()
        self._notifier.stop()
        self._bus.shutdown()


def answer_for(b: EcuBehaviour, request: bytes) -> bytes | None:
    """The answer an ECU with behaviour ``b`` gives to ``request`` (None: it stays silent)."""
    sid = request[0]
    if sid == 0x01:
        if len(request) - 1 > b.max_pids:
            return bytes([0x7F, 0x01, 0x13])
        body = b"".join(bytes([p]) + _pid_data(b, p) for p in request[1:] if _pid_data(b, p))
        return b"\x41" + body if body else None
    if sid in (0x03, 0x07, 0x0A):
        codes = b.dtcs.get(sid, [])
        raw = b"".join(c.to_bytes(2, "big") for c in codes)
        count = bytes([len(codes)]) if b.count_byte or not codes else b""
        return bytes([sid + 0x40]) + count + raw
    if sid == 0x04:
        b.dtcs.pop(0x03, None)
        b.dtcs.pop(0x07, None)
        return b"\x44"
    if request[:2] == b"\x09\x02" and b.vin:
        return b"\x49\x02\x01" + b.vin.encode()
    if sid in (0x21, 0x22):
        return b.uds.get(request, bytes([0x7F, sid, 0x31]))
    return None


def _pid_data(b: EcuBehaviour, pid: int) -> bytes:
    if pid not in SUPPORT_PIDS:
        return b.pids.get(pid, b"")
    bits = 0
    for p in b.pids:
        if pid < p <= pid + 32:
            bits |= 1 << (32 - (p - pid))
    if any(p > pid + 32 for p in b.pids):
        bits |= 1  # PID pid+32 (the next bitmap) is supported
    return bits.to_bytes(4, "big") if bits or pid == 0 else b""

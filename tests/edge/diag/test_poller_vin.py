"""The poller asks a simulated ECU for the VIN once, at its first poll, over native ISO-TP."""

from __future__ import annotations

import can
from diag_helpers import channel

from edge.diag.isotp_link import IsoTpLink
from edge.diag.obd_tap import ObdTap
from edge.diag.poller import Poller, PollGroup
from edge.sim.ecus import EcuBehaviour, SimulatedEcu
from edge.sim.vins import simulated_vin

VIN = simulated_vin(3, "POLLED")


def test_the_first_poll_reads_the_vin_and_later_polls_do_not_ask_again() -> None:
    name = channel()
    tester = can.Bus(interface="virtual", channel=name)
    ecu = SimulatedEcu(name, EcuBehaviour(pids={0x0D: b"\x32"}, vin=VIN))
    seen: list[str] = []
    try:
        with IsoTpLink(tester, timeout=0.3) as link:
            poller = Poller(link, [PollGroup("fast", (0x0D,), 1.0)], clock=lambda: 0.0,
                            tap=ObdTap(seen.append))
            poller.poll(0.0)
            after_first = ecu.answered
            poller.poll(1.0)
            after_second = ecu.answered
    finally:
        ecu.stop()
        tester.shutdown()
    assert seen == [VIN] and poller.tap.vin == VIN
    assert after_second - after_first == 1  # the second poll asked for speed only

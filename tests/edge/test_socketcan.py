"""The SocketCAN path with the kernel filter derived from the rules (needs a vcan0 device).

These machines have no vcan module (docs/design.md), so this test skips here, as python-can's own
SocketCAN tests do; it runs wherever ``ip link add dev vcan0 type vcan`` works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import can
import pytest

from edge.decode import Decoder, load_dbcs
from edge.errors import ConfigError
from edge.source import BusSource

REF_DBC = Path(__file__).resolve().parents[2] / "dbc" / "fleetcare_ref.dbc"


def _vcan_source(**options: Any) -> BusSource:
    if not Path("/sys/class/net/vcan0").exists():
        pytest.skip("no vcan0 device (ip link add dev vcan0 type vcan; ip link set up vcan0)")
    try:
        return BusSource("socketcan", "vcan0", **options)
    except ConfigError as exc:
        pytest.skip(f"vcan0 cannot be opened here: {exc}")


def test_kernel_filter_passes_only_needed_ids() -> None:
    decoder = Decoder(load_dbcs([REF_DBC]))
    source = _vcan_source(can_filters=decoder.can_filters({"BCM_Ambient"}))
    sender = can.Bus(interface="socketcan", channel="vcan0")
    try:
        sender.send(can.Message(arbitration_id=0x200, data=bytes(8), is_extended_id=False))
        sender.send(can.Message(arbitration_id=0x320, data=bytes(2), is_extended_id=False))
        frame = source.recv(timeout=2)
        assert frame is not None and frame.arbitration_id == 0x320
        assert source.recv(timeout=0.2) is None
    finally:
        sender.shutdown()
        source.shutdown()

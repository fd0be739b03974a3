"""Taps inside a real agent on a virtual bus: what they find is spooled, codes at once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import can
import pytest
from diag_helpers import channel, dtc_events, make_agent, samples, spooled, wait_until

from edge.agent import Agent
from edge.diag.j1939_tap import J1939Tap
from edge.diag.obd_tap import ObdTap
from edge.diag.taps import make_taps
from edge.diag.uds_tap import UdsTap
from edge.errors import ConfigError
from edge.tap import FrameTap
from edge.wire import contract


def test_make_taps_by_name_and_unknown_names_listed() -> None:
    obd, j1939, uds = make_taps(["obd", "j1939", "uds"])
    assert isinstance(obd, ObdTap) and isinstance(j1939, J1939Tap) and isinstance(uds, UdsTap)
    with pytest.raises(ConfigError, match="valid taps are obd, j1939, uds"):
        make_taps(["obd", "kline"])
    with pytest.raises(ConfigError, match="does not exist"):
        make_taps(["uds:no_such_make"])


def _send_all(frames: list[can.Message], taps: Sequence[FrameTap],
              tmp_path: Path) -> tuple[Agent, list[contract.Message]]:
    name = channel()
    sender = can.Bus(interface="virtual", channel=name, preserve_timestamps=True)
    reader = can.Bus(interface="virtual", channel=name)
    try:
        agent, spool = make_agent(reader, tmp_path / "spool", taps)
        for frame in frames:
            sender.send(frame)
        agent.drain(lambda: agent.stats().frames_read >= len(frames))
        agent.flush()
        return agent, spooled(spool)
    finally:
        sender.shutdown()
        reader.shutdown()


def _msg(can_id: int, data: str, ts: float, ext: bool = False) -> can.Message:
    return can.Message(arbitration_id=can_id, data=bytes.fromhex(data), is_extended_id=ext,
                       timestamp=ts)


def test_passive_obd_single_and_multi_frame_11_and_29_bit(tmp_path: Path) -> None:
    t = 1_767_225_600.0
    frames = [
        _msg(0x7DF, "02010D0000000000", t),                        # request, functional
        _msg(0x7E8, "03410D3200000000", t + 0.01),                  # speed 50
        _msg(0x7DF, "0209020000000000", t + 1),                     # VIN request
        _msg(0x7E8, "1014490201575030", t + 1.01),                  # first frame "WP0"
        _msg(0x7E0, "3000000000000000", t + 1.02),                  # flow control
        _msg(0x7E8, "215A5A5A39395A54", t + 1.03),
        _msg(0x7E8, "2253333930303030", t + 1.04),
        _msg(0x18DB33F1, "0103000000000000", t + 2, ext=True),      # stored codes, 29-bit
        _msg(0x18DAF110, "0643020A80056200", t + 2.01, ext=True),   # P0A80, P0562 from 0x10
        _msg(0x18DB33F1, "0103000000000000", t + 3, ext=True),
        _msg(0x18DAF110, "0443010A80000000", t + 3.01, ext=True),   # P0562 cleared
    ]
    tap = ObdTap()
    _agent, messages = _send_all(frames, [tap], tmp_path)
    assert tap.vin == "WP0ZZZ99ZTS390000"
    assert tap.counters.requests == 4 and tap.counters.answers == 4
    assert ("Vehicle.Speed", 50.0) in [(n, v) for _, n, v in samples(messages)]
    events = [(e.code, e.status, e.ecu, e.source, e.cleared) for e in dtc_events(messages)]
    assert events == [("P0A80", "stored", "0x10", "obd", False),
                      ("P0562", "stored", "0x10", "obd", False),
                      ("P0562", "stored", "0x10", "obd", True)]
    # Each change went out as its own message, not with the next telemetry batch.
    assert sum(1 for m in messages if hasattr(m, "events")) == 2
    cleared = dtc_events(messages)[-1]
    assert (cleared.first_seen, cleared.last_seen) == (t + 2.01, t + 3.01)
    assert cleared.description == "System voltage low"


def _dm1(lamps: int, codes: list[tuple[int, int, int]]) -> bytes:
    body = bytes([lamps, 0xFF])
    for spn, fmi, oc in codes:
        body += bytes([spn & 0xFF, (spn >> 8) & 0xFF, ((spn >> 16) << 5) | fmi, oc])
    return body


def test_j1939_dm1_single_frame_and_bam(tmp_path: Path) -> None:
    t = 1_767_225_600.0
    single = _dm1(0b00000100, [(110, 0, 2)])                 # amber lamp, coolant temp high
    long = _dm1(0b01000100, [(110, 0, 3), (168, 4, 1), (520192, 7, 9)])   # 14 bytes: BAM
    packets = [long[i:i + 7].ljust(7, b"\xFF") for i in range(0, len(long), 7)]
    frames = [can.Message(arbitration_id=0x18FECA00, data=single, is_extended_id=True,
                          timestamp=t)]
    cm = bytes([32, len(long), 0, len(packets), 0xFF, 0xCA, 0xFE, 0x00])
    frames.append(can.Message(arbitration_id=0x1CECFF3D, data=cm, is_extended_id=True,
                              timestamp=t + 1))
    frames += [can.Message(arbitration_id=0x1CEBFF3D, data=bytes([n + 1]) + p,
                           is_extended_id=True, timestamp=t + 1.05 + n / 20)
               for n, p in enumerate(packets)]
    frames.append(can.Message(arbitration_id=0x18FECA00, data=_dm1(0, [(0, 0, 0)]),
                              is_extended_id=True, timestamp=t + 2))
    tap = J1939Tap()
    _, messages = _send_all(frames, [tap], tmp_path)
    assert tap.counters.dm1 == 3 and tap.counters.transfers == 1
    events = [(e.code, e.status, e.ecu, e.source, e.cleared) for e in dtc_events(messages)]
    assert events == [("110:0", "active", "0x00", "j1939", False),
                      ("110:0", "active", "0x3D", "j1939", False),
                      ("168:4", "active", "0x3D", "j1939", False),
                      ("520192:7", "active", "0x3D", "j1939", False),
                      ("110:0", "active", "0x00", "j1939", True)]
    got = {(n, v) for _, n, v in samples(messages)}
    assert ("J1939.DM1.SA3D.MalfunctionLamp", 1.0) in got
    assert ("J1939.DM1.SA3D.AmberWarningLamp", 1.0) in got
    assert ("J1939.DM1.SA3D.SPN520192.FMI7.OccurrenceCount", 9.0) in got
    assert ("J1939.DM1.SA00.SPN110.FMI0.OccurrenceCount", 2.0) in got


def test_broken_bam_is_counted_not_raised(tmp_path: Path) -> None:
    cm = bytes([32, 20, 0, 3, 0xFF, 0xCA, 0xFE, 0x00])
    frames = [can.Message(arbitration_id=0x1CECFF3D, data=cm, is_extended_id=True),
              can.Message(arbitration_id=0x1CEBFF3D, data=b"\x01" + bytes(7), is_extended_id=True),
              can.Message(arbitration_id=0x1CEBFF3D, data=b"\x03" + bytes(7), is_extended_id=True)]
    tap = J1939Tap()
    _, messages = _send_all(frames, [tap], tmp_path)
    assert tap.counters.broken_transfers == 1 and not dtc_events(messages)


def test_uds_tap_on_a_virtual_bus(tmp_path: Path) -> None:
    frames = [_msg(0x744, "0322010100000000", 1.0), _msg(0x74C, "04620101B4000000", 1.01),
              _msg(0x74C, "037F223100000000", 1.02)]
    tap, = make_taps(["uds:fleetcare_ref"])
    _, messages = _send_all(frames, [tap], tmp_path)
    assert [(n, v) for _, n, v in samples(messages)] == [
        ("Vehicle.Powertrain.TractionBattery.StateOfHealth", 90.0)]
    assert isinstance(tap, UdsTap)
    assert tap.counters.parse_errors == 1 and "negative answer" in tap.last_error
    assert wait_until(lambda: tap.counters.request_frames == 1, 1)


def test_a_new_vin_is_handed_over_once_per_change() -> None:
    seen: list[tuple[str, str]] = []
    obd, j1939 = make_taps(["obd", "j1939"], on_vin=lambda vin, how: seen.append((vin, how)))
    vin_frames = [_msg(0x7E8, "1014490201575030", 1.0), _msg(0x7E8, "215A5A5A39395A54", 1.1),
                  _msg(0x7E8, "2253333930303030", 1.2)]
    for frame in vin_frames * 2:
        obd.feed(frame)
    field = b"WVWZZZ1JZXW000001*"
    packets = [field[i:i + 7].ljust(7, b"\xff") for i in range(0, len(field), 7)]
    bam = [can.Message(arbitration_id=0x1CECFF00, is_extended_id=True,
                       data=bytes([32, len(field), 0, len(packets), 0xFF, 0xEC, 0xFE, 0]))]
    bam += [can.Message(arbitration_id=0x1CEBFF00, is_extended_id=True,
                        data=bytes([n + 1]) + p) for n, p in enumerate(packets)]
    for frame in bam:
        j1939.feed(frame)
    assert seen == [("WP0ZZZ99ZTS390000", "obd_mode09"), ("WVWZZZ1JZXW000001", "j1939_feec")]

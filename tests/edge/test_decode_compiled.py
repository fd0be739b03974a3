"""Compiled decoding gives exactly what cantools gives, on every DBC we have.

The generated code (``edge.decode.plan_message``) replaces cantools for plain messages; these
tests hold it to identical results, value for value and bit for bit, on random payloads of
every message of every DBC, on the shared recordings, and on too-short and too-long payloads.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import can
import cantools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.decode import Decoder, _frame_key, load_dbcs, plan_message
from edge.logfile import read_log
from tests.shared_logs import LOG_IDS, LOGS_AND_DBCS

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
DBCS = [*sorted((SHARED / "dbc").glob("*.dbc")), REPO / "dbc" / "fleetcare_ref.dbc"]


def _databases() -> list[cantools.database.can.Database]:
    return [load_dbcs([path], lenient_fallback=True)[0] for path in DBCS]


MESSAGES = [(db, message) for db in _databases() for message in db.messages]


def _bits(value: float) -> bytes:
    """A float's exact bits, so -0.0 and 0.0 (and NaN payloads) count as different."""
    return struct.pack("<d", value)


def _same(left: dict[str, float] | None, right: dict[str, float] | None) -> bool:
    if left is None or right is None:
        return left is right
    return list(left) == list(right) and all(
        _bits(left[k]) == _bits(right[k]) for k in left)


def _decode_both(message: cantools.database.can.Message, data: bytes) -> None:
    db = cantools.database.can.Database([message])
    key = _frame_key(message.frame_id, message.is_extended_frame)
    fast, slow = Decoder([db]), Decoder([db], compiled=False)
    ours = fast.decode(key & 0x1FFFFFFF, message.is_extended_frame, data)
    reference = slow.decode(key & 0x1FFFFFFF, message.is_extended_frame, data)
    assert _same(ours.signals if ours else None, reference.signals if reference else None), (
        message.name, data.hex())
    assert fast.counters == slow.counters


def test_most_messages_of_our_dbcs_are_compiled() -> None:
    planned = [m.name for _, m in MESSAGES if plan_message(m) is not None]
    assert len(planned) >= len(MESSAGES) // 2
    reference = load_dbcs([REPO / "dbc" / "fleetcare_ref.dbc"])[0]
    assert plan_message(reference.get_message_by_name("ECM_Engine")) is not None
    assert plan_message(reference.get_message_by_name("BMS_CellVoltages")) is not None  # mux


@pytest.mark.parametrize(("db", "message"), MESSAGES,
                         ids=[f"{m.name}-{i}" for i, (_, m) in enumerate(MESSAGES)])
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(min_size=0, max_size=72))
def test_compiled_equals_cantools_on_random_payloads(
        db: cantools.database.can.Database, message: cantools.database.can.Message,
        payload: bytes) -> None:
    for data in (payload, (payload * 9)[:message.length], b"\xff" * message.length,
                 b"\x00" * message.length):
        _decode_both(message, data)


def test_the_raw_value_of_each_signal_is_extracted_exactly() -> None:
    """One signal at all-ones, the rest zero: a wrong shift or mask would show at once."""
    for _, message in MESSAGES:
        plan = plan_message(message)
        if plan is None or message.is_multiplexed():
            continue
        for signal in message.signals:
            raw = {s.name: 0 for s in message.signals}
            raw[signal.name] = (1 << (signal.length - 1)) - 1 if signal.is_signed else (
                (1 << signal.length) - 1)
            data = message.encode(raw, scaling=False, strict=False)
            _decode_both(message, bytes(data))


@pytest.mark.parametrize(("log", "dbc"), LOGS_AND_DBCS, ids=LOG_IDS)
def test_compiled_equals_cantools_on_each_shared_log(log: str, dbc: str) -> None:
    dbs = load_dbcs([SHARED / "dbc" / dbc], lenient_fallback=True)
    fast, slow = Decoder(dbs), Decoder(dbs, compiled=False)
    for frame in read_log(SHARED / "can" / log):
        if frame.is_error_frame or frame.is_remote_frame:
            continue
        args = (frame.arbitration_id, frame.is_extended_id, bytes(frame.data))
        ours, reference = fast.decode(*args), slow.decode(*args)
        assert _same(ours.signals if ours else None, reference.signals if reference else None)
        assert (ours.message if ours else None) == (reference.message if reference else None)
    assert fast.counters == slow.counters


def test_a_short_payload_is_malformed_and_a_long_one_is_cut() -> None:
    db = load_dbcs([REPO / "dbc" / "fleetcare_ref.dbc"])[0]
    engine = db.get_message_by_name("ECM_Engine")
    decoder = Decoder([db])
    assert decoder.decode(engine.frame_id, False, b"\x01\x02") is None
    assert decoder.counters.malformed == 1
    long = decoder.decode(engine.frame_id, False, bytes(range(1, 13)))
    cut = decoder.decode(engine.frame_id, False, bytes(range(1, 9)))
    assert long is not None and cut is not None and long.signals == cut.signals


def test_nan_never_hides_in_a_plan() -> None:
    for _, message in MESSAGES:
        plan = plan_message(message)
        for code in plan.signals if plan else ():
            assert not math.isnan(code.bounds[0]) and not math.isnan(code.bounds[1])


def test_frames_from_python_can_decode_alike() -> None:
    db = load_dbcs([REPO / "dbc" / "fleetcare_ref.dbc"])[0]
    wheels = db.get_message_by_name("ESC_WheelSpeeds")
    frame = can.Message(arbitration_id=wheels.frame_id, is_extended_id=False,
                        data=wheels.encode({"WheelSpeed_FL": 12.5, "WheelSpeed_FR": 0,
                                            "WheelSpeed_RL": 300, "WheelSpeed_RR": 99.0}))
    decoded = Decoder([db]).decode(frame.arbitration_id, False, bytes(frame.data))
    assert decoded is not None
    assert decoded.signals == {"WheelSpeed_FL": 12.5, "WheelSpeed_FR": 0.0,
                               "WheelSpeed_RL": 300.0, "WheelSpeed_RR": 99.0}


def test_each_multiplexer_number_decodes_its_own_signals() -> None:
    db = load_dbcs([REPO / "dbc" / "fleetcare_ref.dbc"])[0]
    cells = db.get_message_by_name("BMS_CellVoltages")
    assert plan_message(cells) is not None
    for group in range(4):
        values: dict[str, float] = {"CellGroup": group}
        for n in range(4):
            values[f"Cell{group * 4 + n + 1:02d}_Voltage"] = 3.0 + n / 10
        data = bytes(cells.encode(values))
        _decode_both(cells, data)
        decoded = Decoder([db]).decode(cells.frame_id, False, data)
        assert decoded is not None and set(decoded.signals) == set(values)
    malformed = bytes([9]) + bytes(7)  # no group 9
    _decode_both(cells, malformed)
    decoder = Decoder([db])
    assert decoder.decode(cells.frame_id, False, malformed) is None
    assert decoder.counters.malformed == 1

"""The agent's hot path gives exactly cantools' values, or hands the frame to cantools.

A compiled sink (``edge.decode.compile_sink``) decodes a frame straight into a batch's columns
without cantools. Here every message of the reference DBC and of the real DBCs in
``../shared/data/dbc`` goes through its sink on random frames, and what the columns receive is
compared, value by value and bit by bit, with cantools' own ``decode_simple`` on the same
payload, less the values the DBC's range or not-available pattern rules out. Messages the
compiler does not handle (no plan) must decode through cantools, with the same result.
"""

from __future__ import annotations

import math
import random
import struct
from pathlib import Path

import cantools
import pytest

from edge.decode import (
    DecodeCounters,
    Decoder,
    _check,
    _frame_key,
    compile_sink,
    load_dbcs,
    plan_message,
)

REPO = Path(__file__).resolve().parents[2]
SHARED_DBCS = REPO.parent / "shared" / "data" / "dbc"
REFERENCE = REPO / "dbc" / "fleetcare_ref.dbc"
FLOAT_DBC = '''VERSION ""
BO_ 291 Inverter: 8 Vector__XXX
 SG_ Torque : 0|32@1- (1,0) [-1000|1000] "Nm" Vector__XXX
 SG_ Status : 32|8@1+ (1,0) [0|255] "" Vector__XXX
SIG_VALTYPE_ 291 Torque : 1;
'''
"""A message with an IEEE float signal: the compiler leaves it to cantools."""


def _dbc_params() -> list[object]:
    shared = sorted(SHARED_DBCS.glob("*.dbc"))
    params: list[object] = [pytest.param(REFERENCE, id="fleetcare_ref")]
    params += [pytest.param(path, id=path.stem) for path in shared]
    if not shared:
        params.append(pytest.param(None, id="shared", marks=pytest.mark.skip(
            reason=f"no real DBCs in {SHARED_DBCS} (optional test data, not in this repo)")))
    return params


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


def _expected(message: cantools.database.can.Message,
              data: bytes) -> list[tuple[str, float]] | None:
    """cantools' values of the frame that the agent publishes, in cantools' order (None:
    cantools cannot decode it)."""
    try:
        raw = message.decode_simple(data, decode_choices=False)
    except Exception:  # cantools' several error types for a malformed frame
        return None
    out = []
    for name, value in raw.items():
        low, high, not_available = _check(message.get_signal_by_name(name))
        number = float(value)  # type: ignore[arg-type]
        if low <= number <= high and number != not_available:
            out.append((name, number))
    return out


def _payloads(message: cantools.database.can.Message, rng: random.Random) -> list[bytes]:
    """Random frames, edge patterns, a long and a short one, and (multiplexed) random frames
    carrying each multiplexer number the DBC defines."""
    n = message.length
    frames = [rng.randbytes(n) for _ in range(150)]
    frames += [b"\x00" * n, b"\xff" * n, bytes(range(n)), b"\x01" * (n + 3), b"\x02" * (n - 1)]
    muxes = [s for s in message.signals if s.is_multiplexer]
    if len(muxes) != 1:
        return frames
    for number in sorted({i for s in message.signals for i in (s.multiplexer_ids or ())}):
        present = [s for s in message.signals
                   if s.multiplexer_ids is None or number in s.multiplexer_ids]
        for _ in range(20):
            values = {s.name: _random_raw(s, rng) for s in present}
            values[muxes[0].name] = number
            frames.append(bytes(message.encode(values, scaling=False, strict=False)))
    return frames


def _random_raw(signal: cantools.database.can.Signal, rng: random.Random) -> int:
    if signal.is_signed:
        return rng.randrange(-(1 << (signal.length - 1)), 1 << (signal.length - 1))
    return rng.randrange(1 << signal.length)


@pytest.mark.parametrize("dbc", _dbc_params())
def test_every_sink_gives_exactly_cantools_values_on_random_frames(dbc: Path) -> None:
    rng = random.Random(dbc.name)
    db = load_dbcs([dbc], lenient_fallback=True)[0]
    for message in db.messages:
        plan = plan_message(message)
        if plan is None:
            _assert_falls_back_to_cantools(message, _payloads(message, rng))
            continue
        stamps: list[float] = []
        names: list[str] = []
        values: list[float] = []
        counters = DecodeCounters()
        sink = compile_sink(plan, {s.name: (f"{message.name}.{s.name}", None, 0.0)
                                   for s in message.signals}, counters,
                            (stamps, names, values))
        for i, data in enumerate(_payloads(message, rng)):
            stamps.clear()
            names.clear()
            values.clear()
            expected = _expected(message, data)
            done = sink(float(i), data)
            if expected is None:
                assert done == -1 and not values, (message.name, data.hex())
                continue
            assert done == 0, (message.name, data.hex())
            got = list(zip(names, values, strict=True))
            assert [(n.split(".", 1)[1], _bits(v)) for n, v in got] == [
                (n, _bits(v)) for n, v in expected], (message.name, data.hex())
            assert stamps == [float(i)] * len(got)


def _assert_falls_back_to_cantools(message: cantools.database.can.Message,
                                   payloads: list[bytes]) -> None:
    """A message without a plan decodes through cantools: the decoder says what it says."""
    decoder = Decoder([cantools.database.can.Database([message])])
    key = _frame_key(message.frame_id, message.is_extended_frame)
    for data in payloads:
        decoded = decoder.decode(key & 0x1FFFFFFF, message.is_extended_frame, data)
        expected = _expected(message, data)
        if expected is None:
            assert decoded is None
        else:
            assert decoded is not None
            assert [(n, _bits(v)) for n, v in decoded.signals.items()] == [
                (n, _bits(v)) for n, v in expected]


def test_a_float_signal_is_left_to_cantools_and_decodes_alike(tmp_path: Path) -> None:
    path = tmp_path / "float.dbc"
    path.write_text(FLOAT_DBC, encoding="ascii")
    message = load_dbcs([path])[0].get_message_by_name("Inverter")
    assert plan_message(message) is None
    payloads = [struct.pack("<fB3x", torque, 7) for torque in (0.0, -12.5, 999.0, 1e9)]
    _assert_falls_back_to_cantools(message, payloads)
    decoded = Decoder([cantools.database.can.Database([message])]).decode(291, False,
                                                                          payloads[1])
    assert decoded is not None and decoded.signals == {"Torque": -12.5, "Status": 7.0}


def test_the_reference_dbc_exercises_signed_big_endian_scaled_and_multiplexed_sinks() -> None:
    """The comparison above is only as good as what it covers: each kind is compiled."""
    db = load_dbcs([REFERENCE])[0]
    compiled = [m for m in db.messages if plan_message(m) is not None]
    signals = [s for m in compiled for s in m.signals]
    assert any(s.is_signed for s in signals)
    assert any(s.byte_order == "big_endian" for s in signals)
    assert any(s.byte_order == "little_endian" for s in signals)
    assert any(s.scale != 1 and not math.isclose(s.scale, 1) for s in signals)
    assert any(s.offset != 0 for s in signals)
    assert any(m.is_multiplexed() for m in compiled)

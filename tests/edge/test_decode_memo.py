"""A memoising sink writes exactly what the plain compiled sink writes, payload by payload.

``edge.decode.memo_sink`` remembers what each distinct payload of a message decodes to. It
must be invisible: on a stream of frames where payloads repeat, change and come back, are too
short, or carry invalid values, its columns (bit for bit), its return values and the decoder
counters must equal those of ``compile_sink``'s sink fed the same frames, through the
memory's emptying and after it demotes itself for a message whose payloads do not repeat.
The reader's memory of ``ID#DATA`` texts (``edge.logfile.read_raw``) is held to the full
parser the same way, past its bound.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

import cantools
import pytest

from edge.config import REFERENCE_DBC
from edge.decode import (
    DecodeCounters,
    MessagePlan,
    Route,
    compile_sink,
    load_dbcs,
    memo_sink,
    plan_message,
)
from edge.logfile import _TOKEN_MEMO, LogCounters, read_log, read_raw, to_raw

Columns = tuple[list[float], list[str], list[float]]


def _compiled() -> list[tuple[cantools.database.can.Message, MessagePlan]]:
    db = load_dbcs([REFERENCE_DBC])[0]
    found = [(m, plan_message(m)) for m in db.messages]
    return [(m, plan) for m, plan in found if plan is not None]


def _routes(message: cantools.database.can.Message) -> dict[str, Route]:
    """Every other signal published (one scaled), the rest decoded but dropped."""
    routes: dict[str, Route] = {}
    for i, signal in enumerate(message.signals):
        if i % 3 == 2:
            routes[signal.name] = None
        elif i % 3 == 1:
            routes[signal.name] = (f"v.{signal.name}", 0.5, 1.0)
        else:
            routes[signal.name] = (f"v.{signal.name}", None, 0.0)
    return routes


def _stream(message: cantools.database.can.Message, rng: random.Random) -> list[bytes]:
    """Payloads from a small pool (repeats, changes, returns), fresh ones, all-ones (not
    available / out of range), a long and a short (malformed) one, the short one twice."""
    n = message.length
    pool = [rng.randbytes(n) for _ in range(5)] + [b"\xff" * n, b"\x00" * n]
    stream = [rng.choice(pool) for _ in range(300)]
    stream += [rng.randbytes(n) for _ in range(40)]
    stream += [b"\x01" * (n + 2), b"\x02" * (n - 1), pool[0], b"\x02" * (n - 1), pool[0]]
    rng.shuffle(stream)
    return stream


def _bits(values: list[float]) -> list[bytes]:
    return [struct.pack("<d", v) for v in values]


def _feed(sink: Callable[..., int], columns: Columns, stream: list[bytes],
          sinks: dict[str, Callable[..., int]] | None = None) -> list[tuple[int, list[bytes]]]:
    """What each frame did: the sink's return and the column entries it added (stamps,
    names and value bits); with ``sinks`` the current sink is looked up per frame, as the
    agent does, so a demotion takes effect at the next frame."""
    out = []
    for i, data in enumerate(stream):
        if sinks is not None:
            sink = sinks["s"]
        before = len(columns[0])
        done = sink(float(i), data)
        added = [struct.pack("<d", t) for t in columns[0][before:]]
        added += [name.encode() for name in columns[1][before:]]
        added += _bits(columns[2][before:])
        out.append((done, added))
    return out


def _replacing(sinks: dict[str, Callable[..., int]]) -> Callable[[Callable[..., int]], None]:
    """A ``demote`` that puts the plain sink in the memo sink's place, as the agent does."""
    def demote(better: Callable[..., int]) -> None:
        sinks["s"] = better
    return demote


@pytest.mark.parametrize("size", [3, 128])
def test_memo_sink_equals_the_compiled_sink_on_every_reference_message(size: int) -> None:
    rng = random.Random(size)
    for message, plan in _compiled():
        routes = _routes(message)
        stream = _stream(message, rng)
        plain_counters, memo_counters = DecodeCounters(), DecodeCounters()
        plain_columns: Columns = ([], [], [])
        memo_columns: Columns = ([], [], [])
        plain = compile_sink(plan, routes, plain_counters, plain_columns)
        sinks: dict[str, Callable[..., int]] = {}
        sinks["s"] = memo_sink(plan, routes, memo_counters, memo_columns, size=size,
                               demote=_replacing(sinks))
        assert _feed(sinks["s"], memo_columns, stream, sinks) == _feed(
            plain, plain_columns, stream), message.name
        assert memo_counters == plain_counters, message.name
        assert -1 in {done for done, _ in _feed(plain, plain_columns, stream)}


def _one_message() -> tuple[MessagePlan, dict[str, Route], int]:
    plain = [(m, plan) for m, plan in _compiled() if plan.mux is None]
    message, plan = max(plain, key=lambda found: len(found[0].signals))
    return plan, {s.name: (s.name, None, 0.0) for s in message.signals}, message.length


def test_a_changed_payload_is_decoded_afresh_and_an_old_one_is_remembered() -> None:
    plan, routes, n = _one_message()
    counters = DecodeCounters()
    columns: Columns = ([], [], [])
    sink = memo_sink(plan, routes, counters, columns, demote=lambda better: None)
    plain_columns: Columns = ([], [], [])
    plain = compile_sink(plan, routes, DecodeCounters(), plain_columns)
    first, second = bytes(range(n)), bytes(range(1, n + 1))
    for ts, data in enumerate([first, first, second, first, second]):
        sink(float(ts), data)
        plain(float(ts), data)
    assert columns[0] == plain_columns[0] and columns[1] == plain_columns[1]
    assert _bits(columns[2]) == _bits(plain_columns[2])
    per_frame = len(columns[1]) // 5
    assert columns[2][:per_frame] != columns[2][2 * per_frame:3 * per_frame]
    assert counters.decoded == 5


def test_a_message_whose_payloads_do_not_repeat_is_demoted_to_the_plain_sink() -> None:
    plan, routes, n = _one_message()
    demoted: list[Callable[..., int]] = []
    counters = DecodeCounters()
    columns: Columns = ([], [], [])
    sink = memo_sink(plan, routes, counters, columns, size=8, demote=demoted.append)
    for i in range(8):
        sink(float(i), i.to_bytes(n, "little"))
    assert not demoted  # not full yet
    sink(8.0, (8).to_bytes(n, "little"))
    assert len(demoted) == 1  # full with no hit: the plain sink takes over
    kept = len(columns[0])
    demoted[0](9.0, (9).to_bytes(n, "little"))
    assert len(columns[0]) > kept and counters.decoded == 10  # into the same batch


def test_a_message_whose_payloads_repeat_keeps_its_memory() -> None:
    plan, routes, n = _one_message()
    demoted: list[Callable[..., int]] = []
    sink = memo_sink(plan, routes, DecodeCounters(), ([], [], []), size=4,
                     demote=demoted.append)
    stream = [i % 3 for i in range(50)] + [3, 4, 5, 0, 1]  # fills up after many hits
    for i, payload in enumerate(stream):
        sink(float(i), payload.to_bytes(n, "little"))
    assert not demoted


def test_the_raw_reader_memory_of_frame_texts_holds_past_its_bound(tmp_path: Path) -> None:
    rng = random.Random(7)
    texts = [f"{rng.choice(['123', '1A0', '0CF00400'])}#{rng.randbytes(8).hex().upper()}"
             for _ in range(_TOKEN_MEMO + 500)]
    lines = [f"({i / 100:.6f}) can0 {rng.choice(texts[: 20 + i // 2])}"
             for i in range(3 * _TOKEN_MEMO)]
    lines[100] = "(x) can0 123#00"  # a bad time on a remembered text
    lines[200] = "(2.000000) can0 123#0G"  # bad hex
    lines[300] = "(3.000000) can0 123#R"  # remote
    log = tmp_path / "repeats.log"
    log.write_text("\n".join(lines) + "\n", encoding="ascii")
    by_message, by_raw = LogCounters(), LogCounters()
    expected = [to_raw(frame) for frame in read_log(log, by_message)]
    got = [frame for block in read_raw(log, by_raw, chunk=256) for frame in block]
    assert got == expected and by_raw == by_message
    assert by_raw.malformed == 2

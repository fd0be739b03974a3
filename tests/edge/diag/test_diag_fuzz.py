"""Random bytes never raise past a parser: each returns or raises ``DiagParseError`` only.

The taps go further: they never raise at all on any frame, because one bad frame must not stop
an agent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import can
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.diag.answers import decode_answer
from edge.diag.dtc import parse_dtc_answer
from edge.diag.errors import DiagParseError
from edge.diag.j1939 import parse_dm1, parse_j1939_vin
from edge.diag.pids import parse_pid_answer
from edge.diag.reassembly import Reassembler
from edge.diag.taps import make_taps
from edge.diag.uds_map import load_did_map, parse_uds_answer
from edge.diag.vin import parse_vin_answer

FUZZ = settings(max_examples=400, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
LEAF = load_did_map("nissan_leaf")
REF = load_did_map("fleetcare_ref")

PARSERS: dict[str, Callable[[bytes], object]] = {
    "dtc": parse_dtc_answer,
    "pid": parse_pid_answer,
    "vin": parse_vin_answer,
    "answer": decode_answer,
    "dm1": parse_dm1,
    "j1939_vin": parse_j1939_vin,
    "uds_leaf": lambda b: parse_uds_answer(b, LEAF),
    "uds_ref": lambda b: parse_uds_answer(b, REF),
}

PREFIXES = {"dtc": [b"C", b"G", b"J"], "pid": [b"A", b"A\x00"], "vin": [b"I\x02", b"I\x02\x01"],
            "answer": [b"", b"\x7f", b"C", b"A", b"I\x02"], "dm1": [b""], "j1939_vin": [b""],
            "uds_leaf": [b"a\x01", b"a\x02", b"a\x04"], "uds_ref": [b"b\x01\x03", b"b\x01\x01"]}


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(data=st.data())
def test_parsers_raise_only_their_own_error(name: str, data: st.DataObject) -> None:
    prefix = data.draw(st.sampled_from(PREFIXES[name]))
    payload = prefix + data.draw(st.binary(max_size=300))
    with contextlib.suppress(DiagParseError):
        PARSERS[name](payload)


frames = st.builds(
    lambda ext, ident, data: can.Message(arbitration_id=ident if ext else ident & 0x7FF,
                                         is_extended_id=ext, data=data, timestamp=1.0),
    st.booleans(),
    st.one_of(st.sampled_from([0x7DF, 0x7E0, 0x7E8, 0x7EA, 0x79B, 0x7BB, 0x744, 0x74C,
                               0x18DAF110, 0x18DB33F1, 0x18FECA00, 0x1CECFF00, 0x1CEBFF00,
                               0x18FEEC00]),
              st.integers(0, 0x1FFFFFFF)),
    st.binary(max_size=8),
)


@FUZZ
@given(st.lists(frames, max_size=60))
def test_taps_never_raise_on_any_frame(batch: list[can.Message]) -> None:
    taps = make_taps(["obd", "j1939", "uds"])
    for frame in batch:
        for tap in taps:
            tap.feed(frame)


@FUZZ
@given(st.lists(st.tuples(st.integers(0x7E8, 0x7EA), st.binary(max_size=64)), max_size=80))
def test_reassembly_never_raises_and_counts_what_it_drops(feed: list[tuple[int, bytes]]) -> None:
    reassembler = Reassembler()
    done = sum(reassembler.feed(can_id, data) is not None for can_id, data in feed)
    assert done == reassembler.counters.messages

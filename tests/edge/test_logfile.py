"""Recorded logs: every shared format reads, and a bad line names its file and line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.logfile import LogCounters, LogFormatError, parse_candump_line, read_log
from edge.source import ReplaySource, open_source

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "can"


@pytest.mark.parametrize("folder", ["car_obd2_gnss", "truck_j1939_tp", "leaf_2019_uds"])
def test_mf4_and_its_candump_conversion_hold_the_same_frames(folder: str) -> None:
    text = next((SHARED / folder).glob("*.candump.log"))
    mf4 = next((SHARED / folder).glob("*.MF4"))
    from_text = list(read_log(text))
    from_mf4 = list(read_log(mf4))
    assert len(from_text) == len(from_mf4) > 1000
    for a, b in zip(from_text[:500], from_mf4[:500], strict=True):
        assert (a.arbitration_id, a.is_extended_id, bytes(a.data)) == (
            b.arbitration_id, b.is_extended_id, bytes(b.data))
        assert a.timestamp == pytest.approx(b.timestamp, abs=1e-3)


def test_candump_variants() -> None:
    plain = parse_candump_line("(1733187989.936605) can0 153#208010FF00FF802E")
    assert (plain.arbitration_id, plain.is_extended_id, plain.data[:2]) == (0x153, False,
                                                                           b"\x20\x80")
    tagged = parse_candump_line("(1622547830.084000) can0 0CF00300#FFFE00FFFFFF00FF R")
    assert tagged.is_extended_id and tagged.arbitration_id == 0x0CF00300
    fd = parse_candump_line("(1.0) can0 123##1" + "11" * 12)
    assert fd.is_fd and fd.bitrate_switch and len(fd.data) == 12
    remote = parse_candump_line("(1.0) vcan0 123#R")
    assert remote.is_remote_frame
    error = parse_candump_line("(1.0) can0 20000080#0000000000000000")
    assert error.is_error_frame


def test_malformed_lines_are_counted_with_file_and_line(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_text("(1.0) can0 123#0102\n"
                   "(2.0) can0 12#01\n"            # id of two digits
                   "garbage\n"
                   "(x) can0 123#01\n"             # timestamp not a number
                   "(3.0) can0 123#0G\n"           # not hex
                   "\n"
                   "(4.0) can0 124#03 R\n")
    counters = LogCounters()
    frames = list(read_log(log, counters))
    assert [f.arbitration_id for f in frames] == [0x123, 0x124]
    assert counters.frames == 2 and counters.malformed == 4
    assert [w.split(": ")[0] for w in counters.malformed_at] == [
        f"{log}:2", f"{log}:3", f"{log}:4", f"{log}:5"]
    assert "3- or 8-digit hex id" in counters.malformed_at[0]
    with pytest.raises(LogFormatError, match=r"bad\.log:2: .*hex id"):
        list(read_log(log, strict=True))


def test_missing_and_corrupt_logs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ReplaySource([tmp_path / "nope.log"])
    corrupt = tmp_path / "broken.blf"
    corrupt.write_bytes(b"LOGG" + bytes(100))
    with pytest.raises(LogFormatError, match=r"broken\.blf"):
        list(read_log(corrupt))


def test_replay_source_as_fast_as_possible_then_exhausted() -> None:
    log = SHARED / "subaru_wrx" / "cruise.log"
    source = open_source("replay", str(log))
    stop = threading.Event()
    count = 0
    while not source.exhausted and not stop.is_set():
        if source.recv(timeout=0) is not None:
            count += 1
    assert count == 6106
    assert source.recv(timeout=0) is None


def test_replay_at_recorded_pace_holds_frames_until_due(tmp_path: Path) -> None:
    log = tmp_path / "paced.log"
    log.write_text("(100.0) can0 123#01\n(100.5) can0 123#02\n")
    source = ReplaySource([log], speed=1.0)
    assert source.recv(timeout=0) is not None  # the first frame sets the origin
    assert source.recv(timeout=0) is None  # the second is due half a second later
    fast = ReplaySource([log], speed=1000.0)
    frames = [fast.recv(timeout=1.0) for _ in range(2)]
    assert all(f is not None for f in frames)


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".trc"])
def test_asc_blf_trc_recordings_replay_the_same_frames(tmp_path: Path, suffix: str) -> None:
    import can

    frames = list(read_log(SHARED / "truck_j1939_tp" / "00000001-60B621D9.candump.log"))[:300]
    path = tmp_path / f"truck{suffix}"
    with can.Logger(str(path)) as writer:
        for frame in frames:
            writer.on_message_received(frame)
    source = open_source("replay", str(path))
    assert isinstance(source, ReplaySource)
    replayed = []
    while not source.exhausted:
        got = source.recv(timeout=0)
        if got is not None:
            replayed.append(got)
    assert [(f.arbitration_id, f.is_extended_id, bytes(f.data)) for f in replayed] == [
        (f.arbitration_id, f.is_extended_id, bytes(f.data)) for f in frames]
    assert source.bytes_read == path.stat().st_size  # what a progress bar counts


@pytest.mark.parametrize("log", sorted(SHARED.glob("*/*.log")), ids=lambda p: p.parent.name)
def test_raw_reader_gives_the_frames_and_counts_of_the_message_reader(log: Path) -> None:
    from edge.logfile import read_raw, to_raw

    by_message, by_raw = LogCounters(), LogCounters()
    expected = [to_raw(frame) for frame in read_log(log, by_message)]
    got = [frame for block in read_raw(log, by_raw, chunk=300) for frame in block]
    assert got == expected
    assert by_raw == by_message


def test_raw_reader_takes_every_line_the_full_parser_takes(tmp_path: Path) -> None:
    from edge.logfile import NOT_DATA, read_raw, to_raw

    log = tmp_path / "mixed.log"
    log.write_text("(1.0) can0 123#0102\n"
                   "(2.0) can0 12#01\n"
                   "# a comment\n"
                   "(3.0) can0 123##1" + "11" * 12 + "\n"
                   "(4.0)  can0\t123#0304 R\n"
                   "(5.0) can0 123#R\n"
                   "(6.0) can0 20000080#0000000000000000\n"
                   "(7.0) can0 0CF00400#F0FF7D0000FFFFFF T\n"
                   "(8.0) can0 123#0G\n"
                   "(9.0) can0 123#\n"
                   "(1e1) can0 123#05")
    by_message, by_raw = LogCounters(), LogCounters()
    expected = [to_raw(frame) for frame in read_log(log, by_message)]
    got = [frame for block in read_raw(log, by_raw, chunk=2) for frame in block]
    assert got == expected and by_raw == by_message
    assert [key for _, key, _ in got].count(NOT_DATA) == 2
    assert by_raw.malformed == 2 and by_raw.frames == len(got) == 8
    with pytest.raises(LogFormatError, match=r"mixed\.log:2: "):
        list(read_raw(log, strict=True))


def test_a_paced_raw_replay_never_hands_a_frame_out_before_it_is_due(tmp_path: Path) -> None:
    import time

    log = tmp_path / "paced.log"
    log.write_text("".join(f"({100 + i / 200:.6f}) can0 123#01\n" for i in range(60)))
    source = ReplaySource([log], speed=1.0)
    seen = 0
    while not source.exhausted:
        frames = source.recv_raw(timeout=0.05)
        now = time.monotonic()
        assert source._origin is not None
        first_ts, started = source._origin
        for ts, _, _ in frames:
            assert started + (ts - first_ts) <= now + 1e-6
        seen += len(frames)
    assert seen == 60 == source.position

    frame_by_frame = ReplaySource([log])
    assert frame_by_frame.recv(timeout=0) is not None
    with pytest.raises(ConfigError):
        frame_by_frame.recv_raw(timeout=0)  # read frame by frame: cannot switch to raw

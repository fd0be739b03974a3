"""The decoder on a real recording and on our reference DBC."""

from pathlib import Path

import can
import cantools
import pytest

from edge.decode import CAN_EFF_FLAG, Decoder, load_dbcs
from edge.errors import DbcError
from tests.shared_logs import LOG_IDS, LOGS_AND_DBCS

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
KONA_LOG = SHARED / "can" / "kona_2018" / "turnonlog.log"
KONA_DBC = SHARED / "dbc" / "hyundai_kia_generic.dbc"
REF_DBC = Path(__file__).resolve().parents[2] / "dbc" / "fleetcare_ref.dbc"
J1939_DBC = SHARED / "dbc" / "CSS-Electronics-SAE-J1939-DEMO.dbc"
TRUCK_LOG = SHARED / "can" / "truck_j1939_tp" / "00000001-60B621D9.candump.log"



def _plain_cantools_decodes(db: cantools.database.can.Database, frames: list[can.Message]) -> int:
    """What bare cantools decodes: exact id, or PGN for a J1939 database (cantools' helper)."""
    exact = {(m.frame_id, m.is_extended_frame): m for m in db.messages}
    by_pgn = {cantools.j1939.pgn_from_frame_id(m.frame_id): m for m in db.messages
              if m.protocol == "j1939"}
    decoded = 0
    for frame in frames:
        message = exact.get((frame.arbitration_id, frame.is_extended_id))
        if message is None and frame.is_extended_id and by_pgn:
            message = by_pgn.get(cantools.j1939.pgn_from_frame_id(frame.arbitration_id))
        if message is None:
            continue
        try:
            message.decode_simple(bytes(frame.data), decode_choices=False)
        except Exception:
            continue
        decoded += 1
    return decoded


@pytest.mark.parametrize(("log", "dbc"), LOGS_AND_DBCS, ids=LOG_IDS)
def test_decode_rate_on_each_shared_log_equals_plain_cantools(log: str, dbc: str) -> None:
    frames = list(can.LogReader(str(SHARED / "can" / log)))
    db = cantools.database.load_file(str(SHARED / "dbc" / dbc), strict=False)
    assert isinstance(db, cantools.database.can.Database)
    decoder = Decoder([db])
    for frame in frames:
        decoder.decode(frame.arbitration_id, frame.is_extended_id, bytes(frame.data))
    c = decoder.counters
    assert c.decoded == _plain_cantools_decodes(db, frames)
    assert c.decoded + c.unknown + c.malformed == len(frames)


def test_j1939_matches_by_pgn_whatever_the_source_address() -> None:
    decoder = Decoder(load_dbcs([J1939_DBC]))
    eec1 = 0x0CF004FE  # as the DBC defines it, from source address 0xFE
    data = bytes([0xFF, 0xFF, 0xFF, 0x40, 0x1F, 0xFF, 0xFF, 0xFF])  # 0x1F40 * 0.125 = 1000 rpm
    for source in (0x00, 0x17, 0xFE):
        frame = decoder.decode((eec1 & ~0xFF) | source, True, data)
        assert frame is not None and frame.signals == {"EngineSpeed": 1000.0}
    assert decoder.decode(eec1, False, data) is None  # an 11-bit id is another frame
    assert decoder.decode(0x0CF00500, True, data) is None  # another PGN
    assert decoder.counters.decoded == 3 and decoder.counters.unknown == 2


def test_j1939_not_available_pattern_is_invalid_not_data() -> None:
    decoder = Decoder(load_dbcs([J1939_DBC]))
    frame = decoder.decode(0x0CF00400, True, bytes([0xFF] * 8))
    assert frame is not None and frame.signals == {}
    assert decoder.counters.invalid_signals == 1


def test_truck_log_decodes_engine_speed_from_every_source_address() -> None:
    decoder = Decoder(load_dbcs([J1939_DBC]))
    names = set()
    for frame in can.LogReader(str(TRUCK_LOG)):
        decoded = decoder.decode(frame.arbitration_id, frame.is_extended_id, bytes(frame.data))
        if decoded is not None:
            names.add(decoded.message)
    assert names == {"EEC1", "CCVS1"}


def test_dbc_extended_id_convention_and_can_fd_and_multiplexing(tmp_path: Path) -> None:
    dbc = tmp_path / "fd.dbc"
    dbc.write_text(
        'VERSION ""\nBS_:\nBU_: ECU\n'
        'BO_ 2566844672 Ext: 8 ECU\n SG_ A : 0|8@1+ (1,0) [0|200] "" ECU\n'
        'BO_ 1024 Fd: 64 ECU\n SG_ Last : 504|8@1+ (1,0) [0|200] "" ECU\n'
        'BO_ 1025 Mux: 8 ECU\n SG_ Sel M : 0|8@1+ (1,0) [0|3] "" ECU\n'
        ' SG_ X m0 : 8|8@1+ (1,0) [0|200] "" ECU\n SG_ Y m1 : 8|8@1+ (2,0) [0|400] "" ECU\n'
        'BA_DEF_ BO_ "VFrameFormat" ENUM "StandardCAN","ExtendedCAN","StandardCAN_FD",'
        '"ExtendedCAN_FD";\nBA_ "VFrameFormat" BO_ 1024 2;\n')
    decoder = Decoder(load_dbcs([dbc]))
    ext = decoder.decode(2566844672 & 0x1FFFFFFF, True, bytes([7] + [0] * 7))  # bit 31 = 29-bit
    assert ext is not None and ext.signals == {"A": 7.0}
    fd = decoder.decode(1024, False, bytes(63) + b"\x05")
    assert fd is not None and fd.signals == {"Last": 5.0}
    mux0 = decoder.decode(1025, False, bytes([0, 9]) + bytes(6))
    mux1 = decoder.decode(1025, False, bytes([1, 9]) + bytes(6))
    assert mux0 is not None and mux0.signals == {"Sel": 0.0, "X": 9.0}
    assert mux1 is not None and mux1.signals == {"Sel": 1.0, "Y": 18.0}


def test_filter_derived_from_needed_messages() -> None:
    decoder = Decoder(load_dbcs([REF_DBC, J1939_DBC]), only_messages={"VCU_Motion", "EEC1"})
    filters = decoder.can_filters({"VCU_Motion", "EEC1"})
    assert {"can_id": 0x200, "can_mask": 0x7FF, "extended": False} in filters
    # PGN 0xF004 from any source address, at any priority
    assert {"can_id": 0x00F00400, "can_mask": 0x3FFFF00, "extended": True} in filters
    assert len(filters) == 2
    assert decoder.decode(0x320, False, bytes(8)) is None  # known, but no rule needs it
    assert decoder.counters.filtered == 1 and decoder.counters.unknown == 0


def test_every_frame_of_a_real_log_is_accounted_for() -> None:
    decoder = Decoder(load_dbcs([KONA_DBC], strict=False))
    frames = list(can.LogReader(str(KONA_LOG)))
    for frame in frames:
        decoder.decode(frame.arbitration_id, frame.is_extended_id, bytes(frame.data))
    c = decoder.counters
    assert c.decoded + c.unknown + c.malformed == len(frames) == 17173
    assert sum(c.unknown_ids.values()) == c.unknown > 0
    assert c.decoded > 0.8 * len(frames)


def test_unknown_id_is_counted_not_raised() -> None:
    decoder = Decoder(load_dbcs([REF_DBC]))
    assert decoder.decode(0x7FF, False, bytes(8)) is None
    assert decoder.decode(0x110, True, bytes(8)) is None  # same number, but a 29-bit id
    assert decoder.counters.unknown == 2
    assert decoder.counters.unknown_ids[0x7FF] == 1
    assert decoder.counters.unknown_ids[0x110 | CAN_EFF_FLAG] == 1


def test_out_of_range_values_are_dropped_and_counted() -> None:
    db = load_dbcs([REF_DBC])[0]
    decoder = Decoder([db])
    message = db.get_message_by_name("BMS_PackStatus")
    # All bits set: the conventional "not available" pattern, outside every signal's range.
    frame = decoder.decode(message.frame_id, False, b"\xff" * 8)
    assert frame is not None
    assert decoder.counters.invalid_signals >= 1
    for name, value in frame.signals.items():
        signal = message.get_signal_by_name(name)
        assert signal.minimum is None or value >= signal.minimum
        assert signal.maximum is None or value <= signal.maximum


def test_short_frame_is_counted_as_malformed() -> None:
    decoder = Decoder(load_dbcs([REF_DBC]))
    assert decoder.decode(0x110, False, b"\x01") is None
    assert decoder.counters.malformed == 1


def test_broken_dbc_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.dbc"
    broken.write_text(
        'VERSION ""\nBO_ 1 X: 8 Y\n SG_ s : 0|8@1+ (1,0) [0|255] "" Y\nCM_ 145 "x";\n'
    )
    with pytest.raises(DbcError, match=r"broken\.dbc"):
        load_dbcs([broken])
    with pytest.raises(DbcError, match="does not exist"):
        load_dbcs([tmp_path / "missing.dbc"])

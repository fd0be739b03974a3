"""The decoder on a real recording and on our reference DBC."""

from pathlib import Path

import can
import cantools
import pytest

from edge.decode import CAN_EFF_FLAG, Decoder, load_dbcs
from edge.errors import DbcError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
KONA_LOG = SHARED / "can" / "kona_2018" / "turnonlog.log"
KONA_DBC = SHARED / "dbc" / "hyundai_kia_generic.dbc"
REF_DBC = Path(__file__).resolve().parents[2] / "dbc" / "fleetcare_ref.dbc"


def test_every_frame_of_a_real_log_is_accounted_for() -> None:
    decoder = Decoder(load_dbcs([KONA_DBC], strict=False))
    frames = list(can.LogReader(str(KONA_LOG)))
    for frame in frames:
        decoder.decode(frame.arbitration_id, frame.is_extended_id, bytes(frame.data))
    c = decoder.counters
    assert c.decoded + c.unknown + c.malformed == len(frames) == 17173
    assert sum(c.unknown_ids.values()) == c.unknown > 0
    assert c.decoded > 0.8 * len(frames)


def test_decoded_count_matches_plain_cantools() -> None:
    db = cantools.database.load_file(str(KONA_DBC), strict=False)
    known = {m.frame_id: m for m in db.messages}
    plain = 0
    frames = list(can.LogReader(str(KONA_LOG)))
    for frame in frames:
        message = known.get(frame.arbitration_id)
        if message is None:
            continue
        try:
            message.decode_simple(bytes(frame.data), decode_choices=False)
        except Exception:
            continue
        plain += 1
    decoder = Decoder(load_dbcs([KONA_DBC], strict=False))
    for frame in frames:
        decoder.decode(frame.arbitration_id, frame.is_extended_id, bytes(frame.data))
    assert decoder.counters.decoded == plain


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

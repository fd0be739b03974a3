"""The reference vehicle DBC loads strictly, round-trips, and names every signal the rules use."""

from __future__ import annotations

import tomllib
from pathlib import Path

import cantools
import pytest
from cantools.database.can import Database, Message

DBC_DIR = Path(__file__).resolve().parents[2] / "dbc"
DBC_PATH = DBC_DIR / "fleetcare_ref.dbc"
RULES_PATH = DBC_DIR / "fleetcare_ref.rules.toml"

EXPECTED_IDS = {
    "BMS_PackStatus": 0x110, "BMS_Health": 0x111, "BMS_CellVoltages": 0x112,
    "BMS_CellSummary": 0x113, "VCU_Motion": 0x200, "ESC_WheelSpeeds": 0x210,
    "BCM_Brakes": 0x220, "ECM_Engine": 0x300, "BCM_LowVoltage": 0x310,
    "BCM_Ambient": 0x320, "DIAG_DtcReport": 0x3F0,
}


@pytest.fixture(scope="module")
def db() -> Database:
    loaded = cantools.database.load_file(DBC_PATH, strict=True)
    assert isinstance(loaded, Database)
    return loaded


def _representative(message: Message, mux_value: int | None) -> dict[str, float]:
    """Values a third of the way into each signal's range, so offsets and signs matter."""
    values: dict[str, float] = {}
    for signal in message.signals:
        if signal.is_multiplexer:
            assert mux_value is not None
            values[signal.name] = mux_value
            continue
        if signal.multiplexer_ids is not None and mux_value not in signal.multiplexer_ids:
            continue
        low = signal.minimum if signal.minimum is not None else 0.0
        high = signal.maximum if signal.maximum is not None else low + 1.0
        if signal.is_signed and low < 0:
            low = low / 3  # exercise a negative raw value
        raw = round((low + (high - low) / 3 - signal.offset) / signal.scale)
        values[signal.name] = raw * signal.scale + signal.offset
    return values


def _mux_values(message: Message) -> list[int | None]:
    if not message.is_multiplexed():
        return [None]
    mux = next(s for s in message.signals if s.is_multiplexer)
    assert mux.minimum is not None and mux.maximum is not None
    return list(range(int(mux.minimum), int(mux.maximum) + 1))


def test_messages_have_expected_ids_and_frames(db: Database) -> None:
    assert {m.name: m.frame_id for m in db.messages} == EXPECTED_IDS
    for message in db.messages:
        assert message.length == 8
        assert not message.is_extended_frame


def test_every_message_round_trips_encode_decode(db: Database) -> None:
    checked = 0
    for message in db.messages:
        for mux_value in _mux_values(message):
            values = _representative(message, mux_value)
            data = message.encode(values, strict=True)
            decoded = message.decode(data, decode_choices=False)
            assert isinstance(decoded, dict)  # a plain message: no container list
            assert set(decoded) == set(values), message.name
            for name, value in values.items():
                scale = message.get_signal_by_name(name).scale
                assert decoded[name] == pytest.approx(value, abs=scale / 2), (message.name, name)
            checked += 1
    assert checked == len(db.messages) + 3  # four groups of the multiplexed message


def test_every_message_has_a_cycle_time(db: Database) -> None:
    for message in db.messages:
        assert message.cycle_time, message.name
    assert db.get_message_by_name("ESC_WheelSpeeds").cycle_time == 20
    assert db.get_message_by_name("ECM_Engine").cycle_time == 10


def test_rules_name_only_signals_of_the_dbc(db: Database) -> None:
    rules = tomllib.loads(RULES_PATH.read_text(encoding="utf-8"))
    names = [rule["dbc"] for rule in rules["signal"]]
    assert names
    for name in names:
        message_name, signal_name = name.split(".")
        assert db.get_message_by_name(message_name).get_signal_by_name(signal_name)
    dtc = rules["dtc"]
    dtc_message = db.get_message_by_name(dtc["message"])
    for key in ("code_signal", "status_signal", "ecu_signal"):
        assert dtc_message.get_signal_by_name(dtc[key])


def test_dbc_covers_byte_orders_signedness_and_multiplexing(db: Database) -> None:
    signals = [s for m in db.messages for s in m.signals]
    assert {s.byte_order for s in signals} == {"little_endian", "big_endian"}
    assert any(s.is_signed for s in signals)
    assert any(s.offset != 0 for s in signals)
    assert [m.name for m in db.messages if m.is_multiplexed()] == ["BMS_CellVoltages"]
    assert db.get_message_by_name("BMS_Health").signals[0].byte_order == "big_endian"
    assert db.get_message_by_name("BCM_Ambient").signals[0].is_signed


def test_value_tables(db: Database) -> None:
    def choices(message: str, signal: str) -> dict[int, str]:
        table = db.get_message_by_name(message).get_signal_by_name(signal).choices
        assert table is not None
        return {int(k): str(v) for k, v in table.items()}

    assert choices("BMS_PackStatus", "BmsState") == {
        0: "Off", 1: "Standby", 2: "Driving", 3: "Charging", 4: "Fault"}
    assert choices("BCM_Brakes", "BrakeFluidLevel") == {0: "OK", 1: "Low", 2: "Critical"}
    assert choices("DIAG_DtcReport", "DtcStatus") == {0: "pending", 1: "stored", 2: "permanent"}


def test_dtc_code_is_laid_out_like_an_obd_answer(db: Database) -> None:
    # P0A80 -> 0x0A80; C1B00 -> letter 1 in the top two bits -> 0x5B00. The first byte on the
    # wire is the first byte of the OBD-II mode 03 answer.
    message = db.get_message_by_name("DIAG_DtcReport")
    values = {"DtcCode": 0x5B00, "DtcStatus": 1, "EcuAddress": 0x29, "DtcCount": 1}
    data = message.encode(values, strict=True)
    assert data[:2] == bytes([0x5B, 0x00])


def test_round_trip_through_dbc_string(db: Database) -> None:
    again = cantools.database.load_string(db.as_dbc_string(), database_format="dbc", strict=True)
    assert isinstance(again, Database)
    assert [m.name for m in again.messages] == [m.name for m in db.messages]
    for original in db.messages:
        copy = again.get_message_by_name(original.name)
        assert copy.frame_id == original.frame_id
        assert copy.cycle_time == original.cycle_time
        # the writer may reorder signals within a message, so compare them by name
        assert sorted(map(_signal_key, copy.signals)) == sorted(map(_signal_key, original.signals))


def _signal_key(signal: cantools.database.can.Signal) -> tuple[str, str]:
    layout = (signal.start, signal.length, signal.byte_order, signal.is_signed, signal.scale,
              signal.offset, signal.minimum, signal.maximum, signal.unit, signal.is_multiplexer,
              signal.multiplexer_ids, signal.choices)
    return (signal.name, repr(layout))

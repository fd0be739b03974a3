"""The byte-level parsers every OBD-II, J1939 and UDS path shares."""

from __future__ import annotations

import pytest

from edge.diag.answers import NegativeAnswer, decode_answer
from edge.diag.dtc import DtcAnswer, DtcTracker, parse_dtc_answer
from edge.diag.errors import DiagParseError
from edge.diag.j1939 import describe_spn_fmi, parse_dm1, split_id
from edge.diag.pids import parse_pid_answer, split_requests, supported_from_bitmap
from edge.diag.uds_map import load_did_map, parse_uds_answer
from edge.diag.vin import parse_vin_answer
from edge.errors import ConfigError
from edge.wire.fault_codes import describe


@pytest.mark.parametrize(("payload", "codes"), [
    (bytes.fromhex("4302 0A80 0562"), ("P0A80", "P0562")),   # with the CAN count byte
    (bytes.fromhex("43 0A80 0562"), ("P0A80", "P0562")),     # without it (emulators, some ECUs)
    (bytes.fromhex("4300"), ()),                            # none: an empty list, no error
    (bytes.fromhex("4301 0A80 0000 0000"), ("P0A80",)),      # count byte, then padding
    (bytes.fromhex("43 0A80 0000"), ("P0A80",)),             # padding pairs are no fault
    (bytes.fromhex("47 5B00"), ("C1B00",)),
    (bytes.fromhex("4A01 C035"), ("U0035",)),
    (bytes.fromhex("43 8035 4265"), ("B0035", "C0265")),
])
def test_fault_code_answers_parse_with_and_without_count_byte(payload: bytes,
                                                              codes: tuple[str, ...]) -> None:
    assert parse_dtc_answer(payload).codes == codes


def test_status_follows_the_mode_and_codes_are_upper_case_j2012() -> None:
    assert parse_dtc_answer(bytes.fromhex("4301 0a80")).status == "stored"
    assert parse_dtc_answer(bytes.fromhex("4701 0a80")).status == "pending"
    answer = parse_dtc_answer(bytes.fromhex("4a01 0a80"))
    assert answer == DtcAnswer("permanent", ("P0A80",))
    assert answer.codes[0] != "P0a80"


@pytest.mark.parametrize("payload", ["", "41", "43", "4305 0A80", "4403"])
def test_malformed_fault_code_answers_raise_our_error(payload: str) -> None:
    with pytest.raises(DiagParseError):
        parse_dtc_answer(bytes.fromhex(payload))


def test_tracker_reports_present_codes_and_clears_at_once() -> None:
    tracker = DtcTracker("obd")
    first = tracker.update(100.0, "0x7E8", DtcAnswer("stored", ("P0A80", "P0562")))
    assert [(e.code, e.cleared, e.first_seen) for e in first] == [
        ("P0A80", False, 100.0), ("P0562", False, 100.0)]
    assert first[0].description == "Replace hybrid/EV battery pack"
    later = tracker.update(160.0, "0x7E8", DtcAnswer("stored", ("P0A80",)))
    assert [(e.code, e.cleared, e.first_seen, e.last_seen) for e in later] == [
        ("P0A80", False, 100.0, 160.0), ("P0562", True, 100.0, 160.0)]
    assert tracker.update(170.0, "0x7E8", DtcAnswer("stored", ()))[0].cleared


@pytest.mark.parametrize(("code", "text"), [
    ("P0A80", "Replace hybrid/EV battery pack"), ("P0A7F", "deterioration"),
    ("P0AA6", "isolation"), ("P0562", "System voltage low"), ("P0563", "System voltage high"),
    ("C1B00", "Brake pad wear"), ("C0035", "Left front wheel speed"),
    ("C0040", "Right front wheel speed"), ("C0045", "Left rear"), ("C0050", "Right rear"),
    ("C0265", "ABS"), ("P0301", "ignition system or misfire"), ("P0129", "fuel and air"),
    ("P0700", "transmission"), ("P1234", "Powertrain code, manufacturer-specific"),
    ("U0101", "Network code, generic"), ("P0128", "thermostat"), ("U0100", "Lost communication"),
])
def test_descriptions_come_from_our_table_or_the_family(code: str, text: str) -> None:
    assert text in describe(code)


def test_several_pids_in_one_answer() -> None:
    answer = parse_pid_answer(bytes.fromhex("41 0C 1AF8 0D 32 05 5A 42 30D4"))
    named = {pid.name: value for pid, value in answer.values}
    assert named == {"RPM": 1726.0, "SPEED": 50.0, "COOLANT_TEMP": 50.0,
                     "CONTROL_MODULE_VOLTAGE": 12.5}
    assert [p.signal for p, _ in answer.values][:2] == [
        "Vehicle.Powertrain.CombustionEngine.Speed", "Vehicle.Speed"]


def test_unknown_pid_keeps_what_came_before() -> None:
    answer = parse_pid_answer(bytes.fromhex("41 0D 32 E7 01 02"))
    assert [p.name for p, _ in answer.values] == ["SPEED"]
    assert answer.unknown_pid == 0xE7


def test_supported_pid_bitmaps() -> None:
    assert supported_from_bitmap(0x00, bytes.fromhex("BE3FA813")) >= {0x01, 0x03, 0x0C, 0x20}
    answer = parse_pid_answer(bytes.fromhex("41 00 80000001"))
    assert answer.supported == {0x01, 0x20}


def test_requests_carry_at_most_six_pids() -> None:
    assert [len(g) for g in split_requests(list(range(1, 15)))] == [6, 6, 2]
    with pytest.raises(ValueError, match="1 to 6"):
        split_requests([1], per_request=7)


@pytest.mark.parametrize("payload", ["41", "41 0C 1A", "42 0C 1AF8"])
def test_malformed_pid_answers_raise_our_error(payload: str) -> None:
    with pytest.raises(DiagParseError):
        parse_pid_answer(bytes.fromhex(payload))


def test_vin_keeps_leading_and_trailing_zero_one_two() -> None:
    # python-OBD's string decoder would return "WP0ZZZ99ZTS39" and "1FT..." without its 1/2s.
    assert parse_vin_answer(b"\x49\x02\x01WP0ZZZ99ZTS390000") == "WP0ZZZ99ZTS390000"
    assert parse_vin_answer(b"\x49\x02\x01" + b"\x00\x00" + b"1FTFW1E50PKE12012") == (
        "1FTFW1E50PKE12012")


@pytest.mark.parametrize("payload", [
    b"\x49\x02\x01WP0ZZZ99ZTS3900", b"\x49\x02\x01WP0ZZZ99ZTS39000I",
    b"\x49\x02\x01wp0zzz99zts390000", b"\x49\x04\x01ABC"])
def test_invalid_vins_are_refused(payload: bytes) -> None:
    with pytest.raises(DiagParseError):
        parse_vin_answer(payload)


def test_decode_answer_dispatches_by_service() -> None:
    assert decode_answer(bytes.fromhex("7F 01 12")) == NegativeAnswer(0x01, 0x12)
    assert decode_answer(bytes.fromhex("50 01")) is None
    assert decode_answer(bytes.fromhex("43 00")) == DtcAnswer("stored", ())


def test_dm1_single_frame() -> None:
    # lamps: MIL on, amber on; SPN 520192 (0x7F000) FMI 7, 3 occurrences; SPN 100 FMI 1, 1.
    data = bytes([0b01000100, 0xFF, 0x00, 0xF0, (0x7 << 5) | 7, 3, 100, 0, 1, 1])
    dm1 = parse_dm1(data)
    assert dm1.lamps == (1, 0, 1, 0)
    assert [(c.code, c.occurrences) for c in dm1.codes] == [("520192:7", 3), ("100:1", 1)]
    assert parse_dm1(bytes([0, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF])).codes == ()
    assert "FMI 1: data valid but below normal range" in describe_spn_fmi("100:1")


def test_j1939_id_split_matches_on_pgn_not_raw_id() -> None:
    assert split_id(0x18FECA00) == (0xFECA, 0xFF, 0x00)
    assert split_id(0x1CECFF3D) == (0xEC00, 0xFF, 0x3D)
    assert split_id(0x1CEB213D) == (0xEB00, 0x21, 0x3D)


def test_uds_map_decodes_and_refuses_what_it_does_not_know() -> None:
    ref = load_did_map("fleetcare_ref")
    assert parse_uds_answer(bytes.fromhex("62 0101 B4"), ref) == [
        ("Vehicle.Powertrain.TractionBattery.StateOfHealth", 90.0)]
    cells = parse_uds_answer(bytes.fromhex("62 0104 3C 3D FF 3E 3C 3C 3C 3C"), ref)
    assert cells[:3] == [("UDS.Aurora.CellTemperature1", 20.0),
                         ("UDS.Aurora.CellTemperature2", 21.0),
                         ("UDS.Aurora.CellTemperature4", 22.0)]
    for bad in ("62 0999 00", "7F 22 31", "62 0102 01", "61"):
        with pytest.raises(DiagParseError):
            parse_uds_answer(bytes.fromhex(bad), ref)


def test_bad_uds_maps_say_what_to_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="does not exist"):
        load_did_map(tmp_path / "none.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text('make = "x"\nrequest_id = 1\nresponse_id = 2\n[[did]]\nid = 1\n')
    with pytest.raises(ConfigError, match="signal"):
        load_did_map(broken)

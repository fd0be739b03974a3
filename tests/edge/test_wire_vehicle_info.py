"""The vehicle-info message on the wire, and the VIN rules both sides share (edge.wire.vin)."""

from __future__ import annotations

import orjson
import pytest

from edge.wire import contract
from edge.wire.contract import ContractError, VehicleInfo
from edge.wire.vin import check_digit, has_valid_check_digit, is_vin, with_check_digit

TRUCK_VIN = "1L06130RELP969468"
"""The VIN the shared J1939 demo truck broadcasts (its ninth character is no check digit)."""
SHA = "ab" * 32


def _info(**changes: object) -> VehicleInfo:
    fields: dict[str, object] = {
        "msg_id": "V1-info-1", "vehicle_id": "V1", "ts": 1_700_000_000.5, "vin": TRUCK_VIN,
        "vin_source": "j1939_feec", "agent_version": "0.4.0",
        "dbc_fingerprints": {"truck.dbc": SHA, "ref.dbc": "cd" * 32},
        "rules_fingerprint": "ef" * 32}
    fields.update(changes)
    return VehicleInfo(**fields)  # type: ignore[arg-type]


def _payload(**changes: object) -> bytes:
    doc = orjson.loads(contract.encode(_info()))
    doc.update(changes)
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


@pytest.mark.parametrize("info", [
    _info(),
    _info(vin=None, vin_source="none"),
    _info(vin="WVWZZZ1JZXW000001", vin_source="obd_mode09", dbc_fingerprints={},
          rules_fingerprint=""),
])
def test_vehicle_info_round_trips_through_the_wire(info: VehicleInfo) -> None:
    payload = contract.encode(info)
    assert contract.decode(payload) == info
    assert contract.msg_id_of(payload) == info.msg_id
    assert orjson.loads(payload)["kind"] == "vehicle_info"


def test_an_absent_vin_key_reads_as_not_yet_read() -> None:
    decoded = contract.decode(_payload(vin=..., vin_source="none"))
    assert isinstance(decoded, VehicleInfo)
    assert decoded.vin is None and decoded.vin_source == "none"


def test_the_topic_is_the_vehicles_own_and_ingest_subscribes_to_it() -> None:
    topic = contract.vehicle_info_topic("V1")
    assert topic == "fleetcare/v1/vehicles/V1/info"
    assert contract.vehicle_of_topic(topic) == "V1"
    assert "fleetcare/v1/vehicles/+/info" in contract.INGEST_TOPICS
    with pytest.raises(ContractError, match="vehicle id"):
        contract.vehicle_info_topic("V 1")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"vin": "1L06130RELP96946"}, "has 16 characters, a VIN has 17"),
    ({"vin": "1L06130RELP96946O"}, "I, O and Q are not allowed"),
    ({"vin": "1l06130relp969468"}, "characters outside 0-9 and A-Z"),
    ({"vin": 12345678901234567}, "vin must be a string or null"),
    ({"vin": "0" * 17}, "an unprogrammed ECU's placeholder"),
    ({"vin": ...}, "vin is absent but vin_source is 'j1939_feec'"),
    ({"vin_source": "none"}, "has vin_source 'none'"),
    ({"vin_source": "uds"}, "vin_source 'uds' is not one of"),
    ({"rules_fingerprint": "not-a-hash"}, "hex SHA-256"),
    ({"dbc_fingerprints": {"a.dbc": SHA.upper()}}, "hex SHA-256"),
    ({"dbc_fingerprints": [SHA]}, "dbc_fingerprints must be an object"),
    ({"agent_version": ""}, "agent_version must be a string of 1-64"),
    ({"agent_version": 4}, "must be strings"),
    ({"agent_version": ...}, "agent_version"),
    ({"ts": "yesterday"}, "malformed vehicle_info payload"),
])
def test_a_malformed_vehicle_info_says_what_is_wrong(changes: dict[str, object],
                                                     reason: str) -> None:
    with pytest.raises(ContractError, match="malformed vehicle_info payload") as caught:
        contract.decode(_payload(**changes))
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_agent_cannot_build_an_invalid_vehicle_info() -> None:
    with pytest.raises(ContractError, match="malformed VIN"):
        _info(vin="SHORT")
    with pytest.raises(ContractError, match="an absent VIN has source 'none'"):
        _info(vin=None)


def test_check_digits_follow_iso_3779() -> None:
    # Worked examples: a North American VIN and one of the shared test VINs with its digit set.
    assert check_digit("1M8GDM9AXKP042788") == "X"
    assert has_valid_check_digit("1M8GDM9AXKP042788")
    assert not has_valid_check_digit(TRUCK_VIN)         # valid VIN characters all the same
    assert is_vin(TRUCK_VIN)
    fixed = with_check_digit("WVWZZZ1JZXW000001")
    assert fixed == "WVWZZZ1J0XW000001" and has_valid_check_digit(fixed)
    with pytest.raises(ValueError, match="has 5 characters"):
        check_digit("ABCDE")

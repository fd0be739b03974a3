"""The helpers both sides share, in edge.wire: one reading of a broker URL, one redaction,
one TLS and login set-up, one secret-file reader, and one fault-code table.

Each helper existed twice (agent and backend) and the copies had drifted: the agent took
``mqtts://host`` as port 8883 while ingest refused it. These tests hold the two sides to the
one behaviour: the backend's names are checked against the wire's, not against a second list.
"""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from edge.config import load_edge_settings
from edge.errors import ConfigError
from edge.publish import Publisher
from edge.spool import Spool
from edge.wire import contract
from edge.wire.mqtt import (
    BrokerUrl,
    TlsFiles,
    configure_tls,
    parse_mqtt_url,
    read_broker_url,
    redact_url,
)
from edge.wire.secrets import read_secret_files
from pipeline.broker import pki
from pipeline.broker.auth import (
    BackendTls,
    apply_client_auth,
    apply_client_tls,
    credentials_from_url,
    parse_broker_url,
)
from pipeline.config import load_pipeline_settings
from pipeline.errors import BrokerError, TerminalPipelineError
from tests.secret_broker import password_broker

PW = "wire-pw-7Hq"
KEY_PW = "wire-key-pw-2Zr"

READINGS = [
    ("mqtt://127.0.0.1:1883", BrokerUrl("127.0.0.1", 1883, tls=False)),
    ("mqtt://broker.example", BrokerUrl("broker.example", 1883, tls=False)),
    ("mqtts://broker.example", BrokerUrl("broker.example", 8883, tls=True)),
    ("mqtts://broker.example:9883", BrokerUrl("broker.example", 9883, tls=True)),
    ("ssl://broker.example", BrokerUrl("broker.example", 8883, tls=True)),
    ("tcp://broker.example:8883", BrokerUrl("broker.example", 8883, tls=False)),
    ("MQTTS://Broker.Example", BrokerUrl("broker.example", 8883, tls=True)),
    ("broker.example", BrokerUrl("broker.example", 1883, tls=False)),
    ("broker.example:1884", BrokerUrl("broker.example", 1884, tls=False)),
    (" mqtt://10.0.0.7:1883/ ", BrokerUrl("10.0.0.7", 1883, tls=False)),
    ("mqtt://[::1]:1884", BrokerUrl("::1", 1884, tls=False)),
    ("mqtts://gw1@broker.example", BrokerUrl("broker.example", 8883, True, "gw1")),
]
BAD = [
    ("http://broker.example:1883", "scheme 'http'"),
    ("mqtt://:1883", "has no host"),
    ("mqtt://broker.example:port", "invalid port"),
    ("mqtt://broker.example:65536", "invalid port"),
    ("mqtt://broker.example:0", "invalid port"),
    ("mqtt://[::1", "invalid host"),
    ("mqtt://broker.example:1883/fleet", "path, query or fragment"),
    ("mqtt://broker.example:1883?qos=1", "path, query or fragment"),
]


@pytest.mark.parametrize(("url", "expected"), READINGS)
def test_a_broker_url_reads_the_same_for_the_agent_and_for_ingest(
        url: str, expected: BrokerUrl) -> None:
    assert read_broker_url(url) == expected
    assert parse_mqtt_url(url) == (expected.host, expected.port)  # the agent's name
    assert parse_broker_url(url) == (expected.host, expected.port)  # ingest's name


@pytest.mark.parametrize(("url", "expected"), READINGS)
def test_tls_is_switched_on_by_the_scheme_alike_on_both_sides(
        url: str, expected: BrokerUrl) -> None:
    agent, backend = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2), \
        mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    configure_tls(agent, url, None)
    apply_client_tls(backend, url, None)
    for client in (agent, backend):
        # paho refuses a second tls_set exactly when the first one happened
        if expected.tls:
            with pytest.raises(ValueError, match="already been configured"):
                client.tls_set()
        else:
            client.tls_set()


@pytest.mark.parametrize(("url", "message"), BAD)
def test_a_bad_broker_url_is_one_line_of_the_right_error_on_each_side(
        url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as agent:
        read_broker_url(url)
    with pytest.raises(BrokerError, match=message) as backend:
        parse_broker_url(url)
    assert str(agent.value) == str(backend.value)
    assert "\n" not in str(agent.value) and "mqtts://host:port" in str(agent.value)
    assert backend.value.__cause__ is None  # the edge error is not chained into the backend's


def test_credentials_in_the_url_are_decoded_and_never_shown_in_errors() -> None:
    read = read_broker_url(f"mqtts://in%20gest:{PW}%40x@broker.example")
    assert (read.host, read.port, read.tls, read.username) == ("broker.example", 8883, True,
                                                               "in gest")
    assert read.password is not None and read.password.get_secret_value() == f"{PW}@x"
    assert PW not in repr(read)
    login = credentials_from_url(f"mqtt://ingest:{PW}@broker.example:1884")
    assert login is not None and login.username == "ingest"
    assert login.password is not None and login.password.get_secret_value() == PW
    for bad in (f"http://gw1:{PW}@broker.example", f"mqtt://gw1:{PW}@broker.example:x"):
        with pytest.raises(ConfigError) as ei:
            read_broker_url(bad)
        assert PW not in str(ei.value) and "gw1:***@" in str(ei.value)


@pytest.mark.parametrize(("text", "shown"), [
    (f"mqtt://gw1:{PW}@broker:1883", "mqtt://gw1:***@broker:1883"),
    (f"mqtt://gw1:{PW}@x@broker:1883", "mqtt://gw1:***@broker:1883"),  # a raw "@" inside
    ("mqtt://gw1@broker:1883", "mqtt://gw1@broker:1883"),
    ("mqtt://broker:1883/a@b", "mqtt://broker:1883/a@b"),
    ("broker:1883", "broker:1883"),
    ("not a url at all", "not a url at all"),
    (f"from mqtt://a:{PW}@h:1 to https://c:{PW}@e/f?g=1",
     "from mqtt://a:***@h:1 to https://c:***@e/f?g=1"),
])
def test_redact_url_hides_every_password_and_nothing_else(text: str, shown: str) -> None:
    assert redact_url(text) == shown


def test_tls_errors_name_the_setting_each_side_uses(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    pki.init_ca(ca)
    pki.issue(ca, "GW1", key_password=SecretStr(KEY_PW))
    files = (ca / "ca.pem", ca / "GW1.pem", ca / "GW1.key")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    with pytest.raises(ConfigError, match=r"cannot load .*; is the key encrypted\? set "
                                          r"tls_key_password$"):
        configure_tls(client, "mqtts://broker.example", TlsFiles(*files))
    with pytest.raises(BrokerError, match=r"cannot load .*; is mqtt_tls_key_password the "
                                          r"key's password\?$") as ei:
        apply_client_tls(client, "mqtts://broker.example",
                         BackendTls(*files, key_password=SecretStr("not-it")))
    assert "not-it" not in str(ei.value)
    with pytest.raises(BrokerError, match=r"TLS CA file .*nowhere\.pem does not exist"):
        apply_client_tls(client, "mqtt://broker.example", BackendTls(ca=tmp_path / "nowhere.pem"))


def _spool(path: Path) -> Spool:
    spool = Spool(path, fsync=False)
    batch = contract.TelemetryBatch("s-0", "GW1", [1.0], ["Vehicle.Speed"], [1.0])
    spool.append(contract.telemetry_topic("GW1"), contract.encode(batch))
    return spool


def _backend_connects(url: str, tls: BackendTls) -> str:
    """The backend's client set up from ``url`` alone (login and TLS); the CONNACK reason."""
    answered, reasons = threading.Event(), []

    def on_connect(client: mqtt.Client, userdata: object, flags: object, rc: object,
                   props: object = None) -> None:
        reasons.append(str(rc))
        answered.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = on_connect
    apply_client_auth(client, url)
    apply_client_tls(client, url, tls)
    client.connect(*parse_broker_url(url))
    client.loop_start()
    try:
        assert answered.wait(20), "no CONNACK"
    finally:
        client.loop_stop()
        client.disconnect()
    return reasons[0]


@pytest.mark.broker
def test_one_mqtts_url_with_a_login_serves_the_agent_and_the_backend(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    pki.init_ca(ca)
    pki.issue(ca, "broker", server_hosts=("127.0.0.1",))
    pki.issue(ca, "GW1")
    pki.issue(ca, "fleetcare-ingest")
    with password_broker(tmp_path / "broker", {"GW1": PW, "ingest": PW}, pki_dir=ca) as broker:
        agent_url = f"mqtts://GW1:{PW}@127.0.0.1:{broker.tls_port}"
        publisher = Publisher(_spool(tmp_path / "spool"), agent_url, "fleetcare-edge-GW1",
                              tls=TlsFiles(ca / "ca.pem", ca / "GW1.pem", ca / "GW1.key"))
        publisher.start()
        try:
            assert publisher.wait_drained(20), "the agent did not get its message through"
        finally:
            publisher.stop()
        backend = BackendTls(ca / "ca.pem", ca / "fleetcare-ingest.pem",
                             ca / "fleetcare-ingest.key")
        assert _backend_connects(f"mqtts://ingest:{PW}@127.0.0.1:{broker.tls_port}",
                                 backend) == "Success"
        assert _backend_connects(f"mqtts://ingest:wrong@127.0.0.1:{broker.tls_port}",
                                 backend) == "Not authorized"
        assert PW not in broker.log.read_text()


def test_the_secret_reader_drops_one_line_break_and_never_quotes_the_secret(
        tmp_path: Path) -> None:
    (tmp_path / "lf").write_text(f"{PW}\n\n", encoding="utf-8")
    (tmp_path / "crlf").write_bytes(f"{PW}\r\n".encode())
    data = {"a_file": tmp_path / "lf", "b_file": str(tmp_path / "crlf"), "c": "kept"}
    filled = read_secret_files(data, ("a", "b", "c"))
    assert (filled["a"], filled["b"], filled["c"]) == (f"{PW}\n", PW, "kept")
    assert "a" not in data, "the caller's dict is left as it was"
    with pytest.raises(ValueError, match=r"^a and a_file are both set; keep one$") as ei:
        read_secret_files({"a": PW, "a_file": tmp_path / "lf"}, ("a",))
    assert PW not in str(ei.value)
    with pytest.raises(ValueError, match=r"^cannot read a_file .*missing: No such file"):
        read_secret_files({"a_file": tmp_path / "missing"}, ("a",))
    (tmp_path / "binary").write_bytes(b"\xff\xfe" + PW.encode())
    with pytest.raises(ValueError, match=r"cannot read a_file .*binary: UnicodeDecodeError"):
        read_secret_files({"a_file": tmp_path / "binary"}, ("a",))


def test_both_configurations_read_a_secret_file_the_same_way(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLEETCARE_EDGE__MQTT_PASSWORD", "FLEETCARE_PIPELINE__MQTT_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    secret = tmp_path / "mqtt-pw"
    secret.write_text(f"{PW}\n", encoding="utf-8")
    edge = load_edge_settings(vehicle_id="GW1", mqtt_password_file=secret)
    backend = load_pipeline_settings(mqtt_password_file=secret)
    assert edge.mqtt_password is not None and backend.mqtt_password is not None
    assert edge.mqtt_password.get_secret_value() == backend.mqtt_password.get_secret_value() \
        == PW
    with pytest.raises(ConfigError, match="cannot read mqtt_password_file") as agent:
        load_edge_settings(vehicle_id="GW1", mqtt_password_file=tmp_path / "missing")
    with pytest.raises(TerminalPipelineError, match="cannot read mqtt_password_file") as ingest:
        load_pipeline_settings(mqtt_password_file=tmp_path / "missing")
    assert PW not in str(agent.value) + str(ingest.value)

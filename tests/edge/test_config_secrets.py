"""The agent's secrets: MQTT login and key password from env, files or TOML; used, never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from edge.config import load_edge_settings
from edge.errors import ConfigError
from edge.publish import Publisher
from edge.spool import Spool
from edge.wire import contract
from edge.wire.mqtt import TlsFiles, parse_mqtt_url, redact_url
from pipeline.broker import pki
from tests.secret_broker import password_broker

PW = "gw1-mqtt-pw-Q9v"
KEY_PW = "gw1-key-pw-4Lm"


def _spool(path: Path, n: int = 3) -> Spool:
    spool = Spool(path, fsync=False)
    for i in range(n):
        batch = contract.TelemetryBatch(f"s-{i}", "GW1", [1.0], ["Vehicle.Speed"], [float(i)])
        spool.append(contract.telemetry_topic("GW1"), contract.encode(batch))
    return spool


def test_secrets_from_env_files_and_toml(tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pw").write_text(PW + "\n", encoding="utf-8")
    (tmp_path / "key-pw").write_text(KEY_PW, encoding="utf-8")
    config = tmp_path / "agent.toml"
    config.write_text(f'vehicle_id = "GW1"\nmqtt_username = "GW1"\n'
                      f'mqtt_password_file = "{tmp_path / "pw"}"\n', encoding="utf-8")
    monkeypatch.setenv("FLEETCARE_EDGE__TLS_KEY_PASSWORD_FILE", str(tmp_path / "key-pw"))
    settings = load_edge_settings(config)
    assert settings.mqtt_password is not None and settings.tls_key_password is not None
    assert settings.mqtt_password.get_secret_value() == PW
    assert settings.tls_key_password.get_secret_value() == KEY_PW
    shown = f"{settings!r} {settings!s} {settings.model_dump()}"
    assert PW not in shown and KEY_PW not in shown


def test_value_and_file_together_is_refused_without_quoting_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEETCARE_EDGE__MQTT_PASSWORD", PW)
    monkeypatch.setenv("FLEETCARE_EDGE__MQTT_PASSWORD_FILE", str(tmp_path / "pw"))
    with pytest.raises(ConfigError, match="mqtt_password and mqtt_password_file") as ei:
        load_edge_settings(vehicle_id="GW1")
    assert PW not in str(ei.value) and ei.value.__cause__ is None
    monkeypatch.delenv("FLEETCARE_EDGE__MQTT_PASSWORD_FILE")
    with pytest.raises(ConfigError, match="reconnect_min_s") as ei:
        load_edge_settings(vehicle_id="GW1", reconnect_min_s=0)
    assert PW not in str(ei.value)


def test_broker_urls_are_shown_without_their_password() -> None:
    assert redact_url(f"mqtt://GW1:{PW}@broker:1883") == "mqtt://GW1:***@broker:1883"
    with pytest.raises(ConfigError) as ei:
        parse_mqtt_url(f"http://GW1:{PW}@broker:1883")
    assert PW not in str(ei.value) and "GW1:***@" in str(ei.value)
    assert parse_mqtt_url(f"mqtt://GW1:{PW}@broker:1884") == ("broker", 1884)


@pytest.mark.broker
def test_the_publisher_logs_in_with_a_password(tmp_path: Path) -> None:
    with password_broker(tmp_path / "broker", {"GW1": PW}) as broker:
        login = TlsFiles(username="GW1", password=SecretStr(PW))
        good = Publisher(_spool(tmp_path / "a"), broker.url(), "fleetcare-edge-GW1", tls=login)
        good.start()
        try:
            assert good.wait_drained(20)
        finally:
            good.stop()
        in_url = Publisher(_spool(tmp_path / "b"), broker.url("GW1", PW), "fleetcare-edge-GW1b")
        in_url.start()
        try:
            assert in_url.wait_drained(20)
        finally:
            in_url.stop()
        spool = _spool(tmp_path / "c", 1)
        wrong = TlsFiles(username="GW1", password=SecretStr("not-it"))
        refused = Publisher(spool, broker.url(), "fleetcare-edge-GW1c", tls=wrong)
        refused.start()
        try:
            assert not refused.wait_drained(1.0)  # not authorised: the entry stays on disk
            assert spool.stats().pending == 1
        finally:
            refused.stop()
        assert PW not in broker.log.read_text()


@pytest.mark.broker
def test_an_encrypted_client_key_with_password_and_login_over_tls(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    pki.init_ca(ca)
    pki.issue(ca, "broker", server_hosts=("127.0.0.1",))
    pki.issue(ca, "GW1", key_password=SecretStr(KEY_PW))
    with password_broker(tmp_path / "broker", {"GW1": PW}, pki_dir=ca) as broker:
        url = f"mqtts://127.0.0.1:{broker.tls_port}"
        files = TlsFiles(ca / "ca.pem", ca / "GW1.pem", ca / "GW1.key",
                         key_password=SecretStr(KEY_PW), username="GW1",
                         password=SecretStr(PW))
        publisher = Publisher(_spool(tmp_path / "spool"), url, "fleetcare-edge-GW1", tls=files)
        publisher.start()
        try:
            assert publisher.wait_drained(20)
        finally:
            publisher.stop()
        for wrong in (None, SecretStr("not-the-key-password")):
            with pytest.raises(ConfigError, match="cannot load the TLS certificate") as ei:
                Publisher(_spool(tmp_path / "x", 0), url, "x",
                          tls=TlsFiles(ca / "ca.pem", ca / "GW1.pem", ca / "GW1.key",
                                       key_password=wrong))
            assert KEY_PW not in str(ei.value) and "not-the-key-password" not in str(ei.value)

"""Backend secrets: settings from env or files, never echoed; broker logins; encrypted CA keys."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pydantic import SecretStr

from pipeline.broker.auth import (
    MqttCredentials,
    apply_client_auth,
    credentials_from_settings,
    credentials_from_url,
    redact_url,
)
from pipeline.config import load_pipeline_settings
from pipeline.errors import TerminalPipelineError
from tests.secret_broker import password_broker

REPO = Path(__file__).resolve().parents[2]
MQTT_PW = "mqtt-pw-7Hq2+/x"
CA_PW = "ca-pw-Zr81"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_each_secret_can_come_from_a_file(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETCARE_PIPELINE__MQTT_USERNAME", "ingest")
    monkeypatch.setenv("FLEETCARE_PIPELINE__MQTT_PASSWORD_FILE",
                       str(_write(tmp_path / "mqtt", MQTT_PW + "\n")))
    monkeypatch.setenv("FLEETCARE_PIPELINE__CRM_SECRET_FILE",
                       str(_write(tmp_path / "crm", "whsec_b2xk whsec_bmV3\n")))
    monkeypatch.setenv("FLEETCARE_PIPELINE__CA_KEY_PASSWORD", CA_PW)
    settings = load_pipeline_settings()
    assert settings.mqtt_password is not None and settings.ca_key_password is not None
    assert settings.mqtt_password.get_secret_value() == MQTT_PW  # trailing newline dropped
    assert settings.crm_secret.get_secret_value() == "whsec_b2xk whsec_bmV3"
    assert settings.ca_key_password.get_secret_value() == CA_PW
    shown = f"{settings!r} {settings!s} {settings.model_dump()}"
    assert MQTT_PW not in shown and CA_PW not in shown and "whsec_b2xk" not in shown
    login = credentials_from_settings(settings)
    assert login is not None and login.username == "ingest" and MQTT_PW not in repr(login)


def test_value_and_file_together_is_an_error_that_does_not_quote_the_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEETCARE_PIPELINE__MQTT_PASSWORD", MQTT_PW)
    monkeypatch.setenv("FLEETCARE_PIPELINE__MQTT_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(TerminalPipelineError, match="mqtt_password and mqtt_password_file") as ei:
        load_pipeline_settings()
    assert MQTT_PW not in str(ei.value) and ei.value.__cause__ is None
    monkeypatch.delenv("FLEETCARE_PIPELINE__MQTT_PASSWORD")
    with pytest.raises(TerminalPipelineError, match=r"cannot read mqtt_password_file .*missing"):
        load_pipeline_settings()


def test_an_unrelated_bad_value_does_not_drag_secrets_into_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEETCARE_PIPELINE__MQTT_PASSWORD", MQTT_PW)
    monkeypatch.setenv("FLEETCARE_PIPELINE__HORIZON_DAYS", "soon")
    with pytest.raises(TerminalPipelineError, match="horizon_days") as ei:
        load_pipeline_settings()
    assert MQTT_PW not in str(ei.value) and ei.value.__cause__ is None


@pytest.mark.parametrize(("url", "shown"), [
    ("mqtt://ingest:s3cr%40t@broker:1883", "mqtt://ingest:***@broker:1883"),
    ("mqtts://gw1:p@10.0.0.1", "mqtts://gw1:***@10.0.0.1"),
    ("mqtt://ingest@broker:1883", "mqtt://ingest@broker:1883"),
    ("mqtt://broker:1883", "mqtt://broker:1883"),
    ("https://u:pw@crm.example/leads?x=1", "https://u:***@crm.example/leads?x=1"),
    ("broker:1883", "broker:1883"),
    ("from mqtt://a:b@h:1 to http://c:d@e/f", "from mqtt://a:***@h:1 to http://c:***@e/f"),
])
def test_redact_url_hides_passwords_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_credentials_from_url_are_percent_decoded() -> None:
    login = credentials_from_url("mqtt://in%20gest:s3cr%40t@broker:1883")
    assert login is not None and login.username == "in gest"
    assert login.password is not None and login.password.get_secret_value() == "s3cr@t"
    assert credentials_from_url("mqtt://broker:1883") is None


def _connect(url: str, credentials: MqttCredentials | None = None) -> str:
    """Connect once; the broker's CONNACK reason as text."""
    answered = threading.Event()
    reason: list[str] = []

    def on_connect(client: mqtt.Client, userdata: object, flags: object, rc: object,
                   props: object = None) -> None:
        reason.append(str(rc))
        answered.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.on_connect = on_connect
    apply_client_auth(client, url, credentials)
    port = int(url.rsplit(":", 1)[1])
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(10), "no CONNACK"
    finally:
        client.loop_stop()
        client.disconnect()
    return reason[0]


@pytest.mark.broker
def test_apply_client_auth_logs_in_to_a_password_broker(tmp_path: Path) -> None:
    with password_broker(tmp_path / "broker", {"ingest": MQTT_PW}) as broker:
        assert _connect(broker.url()) == "Not authorized"  # anonymous: refused
        assert _connect(broker.url(), MqttCredentials("ingest", SecretStr("wrong"))) \
            == "Not authorized"
        assert _connect(broker.url(), MqttCredentials("ingest", SecretStr(MQTT_PW))) \
            == "Success"
        assert _connect(broker.url("ingest", MQTT_PW)) == "Success"  # from the URL
        assert MQTT_PW not in broker.log.read_text()


def _pki(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", "pki", *args], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_pki_encrypts_the_ca_key_with_a_password_from_a_file(tmp_path: Path) -> None:
    ca, pw_file = tmp_path / "ca", _write(tmp_path / "ca-pw", CA_PW + "\n")
    with_pw = {"FLEETCARE_PIPELINE__CA_KEY_PASSWORD_FILE": str(pw_file)}
    assert _pki("init", str(ca), env=with_pw).returncode == 0
    assert b"ENCRYPTED PRIVATE KEY" in (ca / "ca.key").read_bytes()

    refused = _pki("issue", str(ca), "V1")
    assert refused.returncode == 1 and "ca.key is encrypted" in refused.stderr
    wrong = _pki("issue", str(ca), "V1", env={"FLEETCARE_PIPELINE__CA_KEY_PASSWORD": "nope"})
    assert wrong.returncode == 1 and "wrong CA key password" in wrong.stderr
    assert "nope" not in wrong.stderr

    key_pw = _write(tmp_path / "gw-pw", "gw-key-pw\n")
    issued = _pki("issue", str(ca), "V1", "--key-password-file", str(key_pw), env=with_pw)
    assert issued.returncode == 0, issued.stderr
    assert b"ENCRYPTED PRIVATE KEY" in (ca / "V1.key").read_bytes()
    assert _pki("revoke", str(ca), "V1", env=with_pw).returncode == 0
    for done in (issued, refused, wrong):
        assert CA_PW not in done.stdout + done.stderr
        assert "gw-key-pw" not in done.stdout + done.stderr


def test_pki_library_round_trip_with_passwords(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from pipeline.broker import pki

    password = SecretStr(CA_PW)
    pki.init_ca(tmp_path, password=password)
    issued = pki.issue(tmp_path, "GW1", ca_password=password,
                       key_password=SecretStr("gw-key-pw"))
    key = serialization.load_pem_private_key(issued.key.read_bytes(), b"gw-key-pw")
    assert key is not None
    with pytest.raises(pki.PkiError, match="not encrypted"):
        pki.init_ca(tmp_path / "plain")
        pki.issue(tmp_path / "plain", "GW2", ca_password=password)

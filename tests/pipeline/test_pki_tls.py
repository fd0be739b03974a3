"""Mutual TLS on real mosquitto: each vehicle speaks only for itself; bad certificates fail."""

from __future__ import annotations

import datetime as dt
import getpass
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509

from edge import contract
from pipeline import pki
from pipeline.broker import find_mosquitto, free_port, wait_for_port
from pipeline.broker_acl import acl_text, write_broker_config

pytestmark = pytest.mark.broker


@dataclass(frozen=True)
class TlsBroker:
    port: int
    pki_dir: Path
    foreign_dir: Path


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    exe = find_mosquitto()
    if exe is None:
        pytest.skip("mosquitto is not installed: TLS/ACL tests need it (CI installs it)")
    root = tmp_path_factory.mktemp("pki")
    pki_dir, foreign_dir = root / "ca", root / "foreign"
    pki.init_ca(pki_dir)
    pki.issue(pki_dir, "broker", server_hosts=("127.0.0.1", "localhost"))
    for name in ("V1", "V2", "fleetcare-ingest", "V4"):
        pki.issue(pki_dir, name)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    pki.issue(pki_dir, "V3", days=30, valid_from=long_ago)  # expired
    pki.revoke(pki_dir, "V4")
    pki.init_ca(foreign_dir)
    pki.issue(foreign_dir, "V5")
    port = free_port()
    conf = write_broker_config(pki_dir, root / "broker", port=port, run_as=getpass.getuser())
    process = subprocess.Popen([str(exe), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        assert wait_for_port("127.0.0.1", port, timeout=20), "mosquitto TLS listener not up"
        yield TlsBroker(port, pki_dir, foreign_dir)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _client(broker: TlsBroker, name: str, directory: Path | None = None) -> mqtt.Client:
    directory = directory or broker.pki_dir
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{free_port()}")
    client.tls_set(ca_certs=str(broker.pki_dir / "ca.pem"), certfile=str(directory / f"{name}.pem"),
                   keyfile=str(directory / f"{name}.key"), tls_version=ssl.PROTOCOL_TLSv1_2)
    return client


class Inbox:
    """The backend's view: a subscriber with the ingest certificate."""

    def __init__(self, broker: TlsBroker) -> None:
        self.topics: list[str] = []
        self._cond = threading.Condition()
        self.client = _client(broker, "fleetcare-ingest")
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(f"{contract.TOPIC_ROOT}/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.topics.append(msg.topic)
            self._cond.notify_all()

    def wait_for(self, topic: str, timeout: float = 10) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: topic in self.topics, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_vehicle_publishes_only_under_its_own_topics(tls_broker: TlsBroker) -> None:
    inbox = Inbox(tls_broker)
    v1 = _client(tls_broker, "V1")
    v1.connect("127.0.0.1", tls_broker.port)
    v1.loop_start()
    try:
        spoofed = v1.publish(contract.telemetry_topic("V2"), b"spoof", qos=1)
        fake_truth = v1.publish(contract.truth_topic("V1"), b"truth", qos=1)
        own = v1.publish(contract.telemetry_topic("V1"), b"mine", qos=1)
        for info in (spoofed, fake_truth, own):
            info.wait_for_publish(10)
        # One client's QoS 1 messages arrive in order: once its own message is in, the two
        # earlier, forbidden ones would have been too, had the broker let them through.
        assert inbox.wait_for(contract.telemetry_topic("V1"))
        assert contract.telemetry_topic("V2") not in inbox.topics
        assert contract.truth_topic("V1") not in inbox.topics
    finally:
        v1.loop_stop()
        v1.disconnect()
        inbox.close()


@pytest.mark.parametrize(("name", "why"), [("V3", "expired"), ("V4", "revoked"),
                                           ("V5", "signed by another CA")])
def test_bad_certificates_are_refused(tls_broker: TlsBroker, name: str, why: str) -> None:
    directory = tls_broker.foreign_dir if name == "V5" else tls_broker.pki_dir
    client = _client(tls_broker, name, directory)
    with pytest.raises((ssl.SSLError, OSError)):
        client.connect("127.0.0.1", tls_broker.port)
        client.loop_start()
        # TLS 1.2: the server's verdict on our certificate arrives during the handshake.
        client.publish(contract.telemetry_topic(name), b"x", qos=1).wait_for_publish(5)
    client.loop_stop()


def test_acl_names_every_vehicle_topic_kind() -> None:
    text = acl_text(("fleetcare-ingest",))
    for kind in ("telemetry", "dtc", "health"):
        assert f"pattern write fleetcare/v1/vehicles/%u/{kind}" in text
    assert "user fleetcare-ingest\ntopic read fleetcare/v1/#" in text


def test_ca_refuses_to_be_overwritten_and_crl_lists_revocations(tmp_path: Path) -> None:
    pki.init_ca(tmp_path)
    with pytest.raises(pki.PkiError, match="refusing to overwrite"):
        pki.init_ca(tmp_path)
    issued = pki.issue(tmp_path, "V9", days=10)
    assert (tmp_path / "V9.key").stat().st_mode & 0o077 == 0  # private key: owner only
    serial = pki.revoke(tmp_path, "V9")
    crl = x509.load_pem_x509_crl((tmp_path / "crl.pem").read_bytes())
    assert serial == issued.serial
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    with pytest.raises(pki.PkiError, match="no certificate"):
        pki.revoke(tmp_path, "nobody")
    shutil.rmtree(tmp_path / "nowhere", ignore_errors=True)
    with pytest.raises(pki.PkiError, match="holds no CA"):
        pki.issue(tmp_path / "nowhere", "V1")

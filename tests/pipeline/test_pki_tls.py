"""Mutual TLS on real mosquitto: each vehicle speaks only for itself; bad certificates fail.

The last tests put the real ingest loop behind that broker, logged in with the backend's
certificate: what the ACL cannot stop (a vehicle lying in its own payload, re-using another
vehicle's message id, flooding) is caught by ingest and dead-lettered with the reason.
"""

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

import duckdb
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509

from edge.wire import contract
from pipeline.broker import pki
from pipeline.broker.acl import acl_text, write_broker_config
from pipeline.broker.auth import BackendTls
from pipeline.broker.harness import find_mosquitto, free_port, wait_for_port
from pipeline.ingest.admission import RateLimit, Vehicle, register_vehicles
from pipeline.ingest.service import Ingestor
from pipeline.store import connection as store
from tests.pipeline.test_ingest import SIGNALS, handled, telemetry

pytestmark = pytest.mark.broker

INBOX_USER = "fleetcare-inbox"
"""A second backend user (read rights like ingest's), for the tests' own subscriber."""


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
    for name in ("V1", "V2", "fleetcare-ingest", INBOX_USER, "V4"):
        pki.issue(pki_dir, name)
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    pki.issue(pki_dir, "V3", days=30, valid_from=long_ago)  # expired
    pki.revoke(pki_dir, "V4")
    pki.init_ca(foreign_dir)
    pki.issue(foreign_dir, "V5")
    port = free_port()
    conf = write_broker_config(pki_dir, root / "broker", port=port, run_as=getpass.getuser(),
                               backend_users=("fleetcare-ingest", INBOX_USER))
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
    """The backend's view: a subscriber with a backend certificate of its own.

    Not ingest's: the broker makes a certificate's name its client id, so a second connection
    with ingest's certificate would take the first one's session (and be taken back).
    """

    def __init__(self, broker: TlsBroker) -> None:
        self.topics: list[str] = []
        self._cond = threading.Condition()
        self.client = _client(broker, INBOX_USER)
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


def test_a_vehicle_reports_vehicle_info_only_on_its_own_info_topic(
        tls_broker: TlsBroker) -> None:
    inbox = Inbox(tls_broker)
    v1 = _client(tls_broker, "V1")
    v1.connect("127.0.0.1", tls_broker.port)
    v1.loop_start()
    try:
        report = contract.encode(contract.VehicleInfo("v1-info", "V1", 1.7e9, None, "none",
                                                      "0.4.0"))
        spoofed = v1.publish(contract.vehicle_info_topic("V2"), report, qos=1)
        own = v1.publish(contract.vehicle_info_topic("V1"), report, qos=1)
        for info in (spoofed, own):
            info.wait_for_publish(10)
        assert inbox.wait_for(contract.vehicle_info_topic("V1"))  # in order, as above
        assert contract.vehicle_info_topic("V2") not in inbox.topics
    finally:
        v1.loop_stop()
        v1.disconnect()
        inbox.close()


def test_acl_names_every_vehicle_topic_kind() -> None:
    text = acl_text(("fleetcare-ingest",))
    for kind in ("telemetry", "dtc", "health", "info"):
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


# --- the backend's checks behind the mutual-TLS broker (issue 10, item 7) -----------------

def _tls_ingestor(broker: TlsBroker, db_path: Path, **options: object) -> Ingestor:
    """The real ingest loop, logged in with the backend's own certificate over mqtts://."""
    con = store.connect(db_path)
    register_vehicles(con, [Vehicle(v, "EV-A", "north") for v in ("V1", "V2")])
    con.close()
    tls = BackendTls(broker.pki_dir / "ca.pem", broker.pki_dir / "fleetcare-ingest.pem",
                     broker.pki_dir / "fleetcare-ingest.key")
    return Ingestor(f"mqtts://127.0.0.1:{broker.port}", db_path, tls=tls,
                    client_id=f"tls-ingest-{free_port()}", flush_interval_s=0.05,
                    **options).start()  # type: ignore[arg-type]


def _send_as(broker: TlsBroker, name: str, wires: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 with ``name``'s certificate; return once the broker has them all."""
    client = _client(broker, name)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for info in [client.publish(topic, payload, qos=1) for topic, payload in wires]:
            info.wait_for_publish(15)
            assert info.is_published()
    finally:
        client.loop_stop()
        client.disconnect()


def _landed_and_letters(db_path: Path) -> tuple[dict[str, int], list[str]]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        landed = dict(con.execute("SELECT vehicle_id, count(DISTINCT msg_id) FROM telemetry "
                                  "GROUP BY 1").fetchall())
        reasons = [str(r) for (r,) in con.execute(
            "SELECT reason FROM dead_letters ORDER BY id").fetchall()]
        return landed, reasons
    finally:
        con.close()


def test_a_vehicle_speaking_for_another_inside_its_own_topic_is_dead_lettered(
        tls_broker: TlsBroker, db_path: Path) -> None:
    # The ACL keeps V1 on its own topics; what it can still do is lie in its payload, or
    # re-send a message id V2 already used. Both must be caught by ingest, not landed.
    ingestor = _tls_ingestor(tls_broker, db_path)
    try:
        _send_as(tls_broker, "V2", [telemetry("v2-m1", "V2")])
        assert ingestor.wait_for(handled(1), timeout=20)
        lying = (contract.telemetry_topic("V1"), telemetry("v1-lie", "V2")[1])
        stolen_id = telemetry("v2-m1", "V1")
        _send_as(tls_broker, "V1", [lying, stolen_id, telemetry("v1-m1", "V1")])
        assert ingestor.wait_for(handled(4), timeout=20)
        stats = ingestor.stats
    finally:
        ingestor.stop()
    landed, reasons = _landed_and_letters(db_path)
    assert landed == {"V1": 1, "V2": 1}
    assert (stats.dead_letters, stats.msg_id_conflicts, stats.duplicates) == (2, 1, 0)
    assert "topic vehicle 'V1' does not match payload vehicle_id 'V2'" in reasons[0]
    assert "msg_id 'v2-m1' already landed for vehicle 'V2'" in reasons[1]


def test_a_flood_from_one_certificate_is_limited_while_another_lands_in_full(
        tls_broker: TlsBroker, db_path: Path) -> None:
    # Each telemetry message carries SIGNALS rows; the burst lets 5 of V1's messages in and
    # the refill is too slow to add a whole message during the test.
    limit = RateLimit(rows_per_s=0.001, burst_rows=5 * SIGNALS)
    ingestor = _tls_ingestor(tls_broker, db_path, rate_limit=limit)
    flood = [telemetry(f"flood-{i}", "V1") for i in range(150)]
    calm = [telemetry(f"calm-{i}", "V2") for i in range(5)]
    try:
        flooding = threading.Thread(target=_send_as, args=(tls_broker, "V1", flood))
        flooding.start()
        _send_as(tls_broker, "V2", calm)
        flooding.join(30)
        assert ingestor.wait_for(handled(155), timeout=30)
        stats = ingestor.stats
    finally:
        ingestor.stop()
    landed, reasons = _landed_and_letters(db_path)
    assert landed == {"V1": 5, "V2": 5}
    # Nothing silently dropped: every flooded message is either landed or a dead letter.
    assert stats.rate_limited == len(reasons) == 145
    assert all(r.startswith("rate limit: vehicle 'V1' sent ") for r in reasons)

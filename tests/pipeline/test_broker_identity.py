"""The mutual-TLS broker ``fleetcare pki broker-config`` writes, run as a deployment runs it:
no certificate takes another's client id, ingest's queued messages survive an impostor and a
``kill -9`` of the broker and land, and the health check reads the counters as a monitor.

mosquitto runs on the generated files (as root it drops to its own account); ingest is the
``fleetcare ingest`` command over ``mqtts://`` with the backend's certificate.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.wire import contract
from pipeline.broker import pki
from pipeline.broker.account import BROKER_ACCOUNT, account
from pipeline.broker.auth import BackendTls
from pipeline.broker.counters import MonitorIdentityError, read_broker_counters
from pipeline.broker.harness import find_mosquitto, free_port, wait_for_port
from pipeline.errors import BrokerError
from tests.pipeline.broker_processes import (
    FLEET,
    SIGNALS,
    WAIT_S,
    ReceiptWatcher,
    close,
    connected,
    ingest,
    landed,
    publish_all,
    telemetry,
    uid_of,
    wait_for_saves,
)
from tests.polling import poll

pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")]

INGEST = "fleetcare-ingest"
QUEUED = 20


@dataclass(frozen=True)
class Deployment:
    """The generated broker files and where mosquitto listens."""

    root: Path
    pki_dir: Path
    conf: Path
    port: int

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def tls(self, name: str) -> BackendTls:
        return BackendTls(self.pki_dir / "ca.pem", self.pki_dir / f"{name}.pem",
                          self.pki_dir / f"{name}.key")

    def env(self, name: str) -> dict[str, str]:
        """The settings that log ``fleetcare`` in with ``name``'s certificate."""
        files = self.tls(name)
        return {"FLEETCARE_PIPELINE__MQTT_TLS_CA": str(files.ca),
                "FLEETCARE_PIPELINE__MQTT_TLS_CERT": str(files.cert),
                "FLEETCARE_PIPELINE__MQTT_TLS_KEY": str(files.key)}


class Mosquitto:
    """mosquitto on the generated configuration, as systemd would start it."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.log = deployment.root / "mosquitto.log"
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen([str(find_mosquitto()), "-c", str(deployment.conf)],
                                         stdout=sink, stderr=sink)
        assert poll("the TLS listener",
                    lambda: wait_for_port("127.0.0.1", deployment.port, 0.5)
                    or self.proc.poll() is not None) and self.proc.poll() is None, \
            self.log.read_text()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=WAIT_S)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=WAIT_S)


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    """A CA, certificates, and the broker files from ``fleetcare pki broker-config``.

    Under a directory any user may enter, so mosquitto's own account can reach them.
    """
    root = Path(tempfile.mkdtemp(prefix="fleetcare-identity-"))
    root.chmod(0o755)
    try:
        pki_dir = root / "pki"
        pki.init_ca(pki_dir)
        pki.issue(pki_dir, "broker", server_hosts=("127.0.0.1",))
        for name in ("V1", INGEST, "fleetcare-monitor"):
            pki.issue(pki_dir, name)
        port = free_port()
        done = subprocess.run([sys.executable, "-m", "flows.cli", "pki", "broker-config",
                               str(pki_dir), "--out", str(root / "broker"), "--port",
                               str(port), "--fleet-size", str(FLEET)],
                              capture_output=True, text=True, timeout=WAIT_S,
                              check=False)
        assert done.returncode == 0, done.stderr
        yield Deployment(root, pki_dir, Path(done.stdout.strip()), port)
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=True)


def vehicle_client(deployment: Deployment, name: str, client_id: str,
                   clean: bool = True) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean)
    files = deployment.tls(name)
    client.tls_set(ca_certs=str(files.ca), certfile=str(files.cert), keyfile=str(files.key),
                   tls_version=ssl.PROTOCOL_TLSv1_2)
    return client


class Impostor:
    """A vehicle certificate asking for ingest's client id with a clean session, subscribed
    to everything: had it got ingest's session, that session's queue would come to it."""

    def __init__(self, deployment: Deployment) -> None:
        self.received: list[str] = []
        self.client = vehicle_client(deployment, "V1", INGEST, clean=True)
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        connected(self.client, "127.0.0.1", deployment.port)
        self.client.subscribe(f"{contract.TOPIC_ROOT}/#", qos=1)
        assert subscribed.wait(WAIT_S)


def test_a_vehicle_cannot_take_ingests_session_and_its_queue_survives_kill_9(
        deployment: Deployment) -> None:
    db_path = deployment.root / "fleet.duckdb"
    ids = [f"v1-{i}" for i in range(QUEUED)]
    broker = Mosquitto(deployment)
    try:
        broker_account = account(BROKER_ACCOUNT)
        if os.geteuid() == 0 and broker_account is not None:
            assert uid_of(broker.proc.pid) == broker_account.uid  # dropped to its own user
            assert (deployment.pki_dir / "broker.key").stat().st_uid == broker_account.uid

        # Ingest's persistent session exists; ingest stops; V1 sends 20, all acknowledged.
        first = ingest(deployment.url, db_path, INGEST, env=deployment.env(INGEST))
        first.wait_for_text("ingesting")
        assert first.stop() == 0
        sender = connected(vehicle_client(deployment, "V1", "V1"), "127.0.0.1", deployment.port)
        publish_all(sender, [telemetry(msg_id, "V1") for msg_id in ids])
        close(sender)

        # V1 asks for ingest's id with a clean session: it gets a session of its own name.
        impostor = Impostor(deployment)
        close(impostor.client)

        # The queue is on disk: a kill -9 and a restart keep it.
        wait_for_saves(deployment.conf.parent / "data" / "mosquitto.db")
        broker.kill()
        broker = Mosquitto(deployment)

        receipts = ReceiptWatcher(vehicle_client(deployment, "V1", "V1"), "V1", "127.0.0.1",
                                  deployment.port)
        second = ingest(deployment.url, db_path, INGEST, env=deployment.env(INGEST))
        try:
            poll(f"receipts for all {QUEUED}", lambda: receipts.has(ids))
        finally:
            assert second.stop() == 0
            receipts.close()
    finally:
        broker.stop()
    assert landed(db_path, "V1") == (QUEUED * SIGNALS, QUEUED)  # all 20, once each
    assert impostor.received == []  # not one of ingest's messages reached the impostor


def test_the_health_check_reads_the_counters_as_a_monitor_and_never_as_ingest(
        deployment: Deployment) -> None:
    broker = Mosquitto(deployment)
    try:
        counters = read_broker_counters(deployment.url, tls=deployment.tls("fleetcare-monitor"))
        assert counters.version.startswith("mosquitto version")
        assert counters.dropped == 0  # a fresh broker published its 0 a moment ago
        with pytest.raises(MonitorIdentityError, match="fleetcare-ingest's certificate"):
            read_broker_counters(deployment.url, tls=deployment.tls(INGEST))
        with pytest.raises(BrokerError, match=r"grant this user 'topic read \$SYS/broker/#'"):
            read_broker_counters(deployment.url, tls=deployment.tls("V1"), timeout_s=3)
    finally:
        broker.stop()

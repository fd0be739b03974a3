"""The agent's publisher over mutual TLS to a real mosquitto (certificates from fleetcare pki)."""

from __future__ import annotations

import getpass
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.publish import Health, Publisher
from edge.spool import Spool
from edge.wire import contract
from edge.wire.mqtt import TlsFiles
from pipeline.broker import pki
from pipeline.broker.acl import write_broker_config
from pipeline.broker.harness import find_mosquitto, free_port, wait_for_port

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    exe = find_mosquitto()
    if exe is None:
        pytest.skip("mosquitto is not installed: the TLS test needs it")
    root = tmp_path_factory.mktemp("edge-pki")
    ca_dir = root / "ca"
    pki.init_ca(ca_dir)
    pki.issue(ca_dir, "broker", server_hosts=("127.0.0.1", "localhost"))
    pki.issue(ca_dir, "GW1")
    port = free_port()
    conf = write_broker_config(ca_dir, root / "broker", port=port, run_as=getpass.getuser())
    process = subprocess.Popen([str(exe), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        assert wait_for_port("127.0.0.1", port, timeout=20), "mosquitto TLS listener not up"
        yield port, ca_dir
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_publisher_drains_the_spool_over_mutual_tls(tls_broker: tuple[int, Path],
                                                    tmp_path: Path) -> None:
    port, ca_dir = tls_broker
    spool = Spool(tmp_path, fsync=False)
    for i in range(3):
        batch = contract.TelemetryBatch(f"tls-{i}", "GW1", [1.0], ["Vehicle.Speed"], [float(i)])
        spool.append(contract.telemetry_topic("GW1"), contract.encode(batch))
    tls = TlsFiles(ca_dir / "ca.pem", ca_dir / "GW1.pem", ca_dir / "GW1.key")
    publisher = Publisher(spool, f"mqtts://127.0.0.1:{port}", "fleetcare-edge-GW1", tls=tls,
                          health=Health("GW1", lambda: {"frames_received": 0.0}))
    publisher.start()
    try:
        assert publisher.wait_drained(20)  # PUBACKs came back over TLS
        assert publisher.stats().acked == 3
    finally:
        publisher.stop()


def test_without_a_client_certificate_nothing_leaves_the_spool(tls_broker: tuple[int, Path],
                                                               tmp_path: Path) -> None:
    port, ca_dir = tls_broker
    spool = Spool(tmp_path, fsync=False)
    spool.append(contract.telemetry_topic("GW1"), b"{}")
    publisher = Publisher(spool, f"mqtts://127.0.0.1:{port}", "fleetcare-edge-GW1",
                          tls=TlsFiles(ca=ca_dir / "ca.pem"))
    publisher.start()
    try:
        assert not publisher.wait_drained(1.0)  # refused: the entry stays on disk
        assert spool.stats().pending == 1
    finally:
        publisher.stop()

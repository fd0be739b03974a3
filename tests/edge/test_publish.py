"""The publisher's health reports, last will, TLS settings and session handling."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest

from edge.errors import ConfigError
from edge.publish import Health, Publisher
from edge.sdnotify import Watchdog
from edge.spool import Spool
from edge.wire import contract
from edge.wire.mqtt import TlsFiles, parse_mqtt_url
from tests.contract_subscriber import ContractSubscriber


@pytest.mark.broker
def test_health_reports_while_connected_and_offline_on_stop(broker_url: str,
                                                            tmp_path: Path) -> None:
    vehicle = f"H{uuid.uuid4().hex[:8]}"
    watcher = ContractSubscriber(broker_url, contract.health_topic(vehicle))
    spool = Spool(tmp_path, fsync=False)
    counters = {"frames_received": 7.0, "spool_bytes": 0.0}
    publisher = Publisher(spool, broker_url, f"test-{vehicle}",
                          health=Health(vehicle, lambda: counters, interval_s=0.05))
    publisher.start()
    assert watcher.wait_for(lambda: len(watcher.messages) >= 2)
    publisher.stop()
    assert watcher.wait_for(lambda: len(watcher.messages) >= 3)
    reports = watcher.health_reports()
    assert len(reports) == len(watcher.messages)  # nothing but health reports on the topic
    first, last = reports[0], reports[-1]
    assert first.online and first.counters["frames_received"] == 7.0
    assert first.counters["reconnects"] == 0.0
    assert not last.online  # the goodbye
    assert len({r.msg_id for r in reports}) == len(reports)
    watcher.close()


@pytest.mark.broker
def test_last_will_when_the_agent_vanishes(broker_url: str, tmp_path: Path) -> None:
    vehicle = f"W{uuid.uuid4().hex[:8]}"
    watcher = ContractSubscriber(broker_url, contract.health_topic(vehicle))
    publisher = Publisher(Spool(tmp_path, fsync=False), broker_url, f"test-{vehicle}",
                          health=Health(vehicle, lambda: {}, interval_s=3600))
    publisher.start()
    assert watcher.wait_for(lambda: len(watcher.messages) >= 1)  # the first periodic report
    sock = publisher._client.socket()  # the gateway loses its link without a DISCONNECT
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    assert watcher.wait_for(lambda: len(watcher.messages) >= 2)
    reports = watcher.health_reports()
    assert len(reports) == len(watcher.messages)
    assert not reports[1].online
    publisher.stop()
    watcher.close()


def test_tls_files_must_exist_and_url_schemes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TLS CA file .*ca\.pem does not exist"):
        Publisher(Spool(tmp_path, fsync=False), "mqtts://broker.example", "x",
                  tls=TlsFiles(ca=tmp_path / "ca.pem"))
    assert parse_mqtt_url("mqtts://broker.example") == ("broker.example", 8883)
    assert parse_mqtt_url("broker.example:1884") == ("broker.example", 1884)
    with pytest.raises(ConfigError, match="mqtt://host:port"):
        parse_mqtt_url("http://broker.example")


def test_watchdog_is_fed_only_while_the_loop_progresses(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(10)
    progress = [0]
    watchdog = Watchdog(path, watchdog_usec=None, progress=lambda: progress[0])
    watchdog.start()
    assert server.recv(64) == b"READY=1"
    assert not watchdog.tick()  # no progress: a hung loop gets no ping
    progress[0] += 1
    assert watchdog.tick()
    assert server.recv(64) == b"WATCHDOG=1"
    assert not watchdog.tick()
    watchdog.stop()
    assert server.recv(64) == b"STOPPING=1"  # the stalled tick sent nothing in between
    assert watchdog.pings == 1
    server.close()


def test_watchdog_thread_pings_at_half_the_period(tmp_path: Path) -> None:
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(10)
    progress = [0]

    def always_progressing() -> int:
        progress.append(0)
        return len(progress)

    watchdog = Watchdog(path, watchdog_usec=20_000, progress=always_progressing)
    watchdog.start()
    assert server.recv(64) == b"READY=1"
    assert server.recv(64) == b"WATCHDOG=1"
    watchdog.stop()
    server.close()


def test_publishers_spread_their_first_reconnect_over_twice_the_minimum(tmp_path: Path) -> None:
    # A broker restart drops every gateway at once: equal backoffs would bring them back in
    # the same instant, past the broker's accept queue, at every doubling.
    delays = []
    for i in range(20):
        spool = Spool(tmp_path / str(i), fsync=False)
        publisher = Publisher(spool, "mqtt://127.0.0.1:1", f"spread-{i}", reconnect_min_s=2,
                              reconnect_max_s=30)
        delays.append(publisher.reconnect_first_delay_s)
        spool.close()
    assert all(2 <= delay < 4 for delay in delays)
    assert len({round(delay, 3) for delay in delays}) > 10

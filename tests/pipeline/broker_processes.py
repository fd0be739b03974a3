"""Helpers for the tests that run the broker the way a deployment does: ``fleetcare``
commands as processes, mosquitto on its generated configuration, and what a client sees.

Every wait polls for an outcome with a generous timeout (the machine is shared and loaded);
nothing here measures a duration.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import paho.mqtt.client as mqtt

from edge.wire import contract
from pipeline.store import connection as store
from tests.background import Background
from tests.polling import poll
from tests.processes import cli

WAIT_S = 120.0
"""Longest wait for any one outcome."""
T0 = 1_767_225_600.0
SIGNALS = 20
FLEET = 10
"""``--fleet-size`` of the brokers whose saves the tests wait for: a fleet this small saves every
second, where the 2,000-vehicle default saves once a minute."""


def telemetry(msg_id: str, vehicle: str) -> tuple[str, bytes]:
    """One telemetry message of ``SIGNALS`` samples on ``vehicle``'s own topic."""
    batch = contract.TelemetryBatch(msg_id, vehicle, [T0 + i for i in range(SIGNALS)],
                                    [f"Vehicle.S{i}" for i in range(SIGNALS)],
                                    [float(i) for i in range(SIGNALS)])
    return contract.telemetry_topic(vehicle), contract.encode(batch)


def fleetcare(*args: str, env: dict[str, str] | None = None) -> Background:
    """``fleetcare ARGS...`` in its own process, in this process's environment plus ``env``;
    killed after ``4 * WAIT_S`` should it hang."""
    return Background(cli(*args), env={**os.environ, **(env or {})},
                      name=f"fleetcare {' '.join(args[:2])}", wait_s=WAIT_S,
                      watchdog_s=4 * WAIT_S)


def ingest(broker_url: str, db_path: Path, client_id: str,
           env: dict[str, str] | None = None) -> Background:
    """``fleetcare -v ingest`` that admits any vehicle, with no rate limit and no CRM."""
    return fleetcare("-v", "ingest", "--no-urgent", "--broker", broker_url, "--db",
                     str(db_path), "--client-id", client_id, "--allow-unregistered",
                     "--rate-limit", "0", "--flush-interval", "0.2", env=env)


def child_pids(pid: int) -> list[int]:
    """Direct children of process ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def uid_of(pid: int) -> int:
    """The effective user id process ``pid`` runs as."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[2] for line in status.splitlines()
                    if line.startswith("Uid:")))


def wait_for_saves(db_file: Path, saves: int = 2) -> None:
    """Return once mosquitto has written ``db_file`` anew ``saves`` times from now.

    Each save writes a new file and renames it into place, so a new inode is a finished save;
    the first may have begun before this call, the second began after it ended: by then
    everything the broker had acknowledged before the call is on disk.
    """
    def identity() -> tuple[int, int] | None:
        try:
            info = db_file.stat()
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns

    seen = [identity()]

    def saved() -> bool:
        now = identity()
        if now is not None and now != seen[-1]:
            seen.append(now)
        return len(seen) > saves

    poll(f"{saves} saves of {db_file}", saved)


def publish_all(client: mqtt.Client, wires: Sequence[tuple[str, bytes]]) -> None:
    """Publish at QoS 1 on a connected, looping client; return once each is acknowledged."""
    infos = [client.publish(topic, payload, qos=1) for topic, payload in wires]
    for info in infos:
        info.wait_for_publish(timeout=WAIT_S)
        assert info.is_published()


def connected(client: mqtt.Client, host: str, port: int) -> mqtt.Client:
    """``client`` connected (CONNACK accepted) with its network loop running."""
    accepted = threading.Event()
    client.on_connect = lambda c, u, f, reason, p: accepted.set() if not reason.is_failure \
        else None
    client.connect(host, port)
    client.loop_start()
    assert accepted.wait(WAIT_S), "the broker did not accept the connection"
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


class ReceiptWatcher:
    """A vehicle's view of its receipts: every message id the backend says it stored."""

    def __init__(self, client: mqtt.Client, vehicle: str, host: str, port: int) -> None:
        self.landed: set[str] = set()
        self._lock = threading.Lock()
        self.client = client
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = self._on_message
        connected(client, host, port)
        client.subscribe(contract.receipt_topic(vehicle), qos=1)
        assert subscribed.wait(WAIT_S)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        receipt = contract.decode_receipt(bytes(msg.payload))
        with self._lock:
            self.landed.update(receipt.landed)

    def has(self, msg_ids: Sequence[str]) -> bool:
        with self._lock:
            return set(msg_ids) <= self.landed

    def close(self) -> None:
        close(self.client)


def landed(db_path: Path, vehicle: str) -> tuple[int, int]:
    """(telemetry rows, distinct message ids) in the store for ``vehicle``."""
    with store.connect_readonly(db_path) as con:
        row = con.execute("SELECT count(*), count(DISTINCT msg_id) FROM telemetry "
                          "WHERE vehicle_id = ?", [vehicle]).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])

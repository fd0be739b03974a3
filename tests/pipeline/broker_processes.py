"""Helpers for the tests that run the broker the way a deployment does: ``fleetcare``
commands as processes, mosquitto on its generated configuration, and what a client sees.

Every wait polls for an outcome with a generous timeout (the machine is shared and loaded);
nothing here measures a duration.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge.wire import contract
from pipeline.store import connection as store

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


def poll(what: str, predicate: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    """``predicate()``'s first truthy value, polled until ``timeout``; fails naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        time.sleep(0.1)


class Fleetcare:
    """One ``fleetcare`` command in its own process; its stderr lines are read as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.seen: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args],
                                     env={**os.environ, **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self._watchdog = threading.Timer(4 * WAIT_S, self.proc.kill)  # never hang the run
        self._watchdog.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.put(line.rstrip("\n"))

    def wait_for(self, needle: str) -> str:
        """Block until a stderr line holds ``needle``; fails with the log when none comes."""
        for line in self.seen:
            if needle in line:
                return line
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None and self._lines.empty():
                break
            try:
                line = self._lines.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no {needle!r} line; log so far:\n" + "\n".join(self.seen[-30:]))

    def stop(self) -> int:
        """SIGTERM, then the exit status (ingest lands and acks what it holds first)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=WAIT_S)
        finally:
            self._watchdog.cancel()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def ingest(broker_url: str, db_path: Path, client_id: str,
           env: dict[str, str] | None = None) -> Fleetcare:
    """``fleetcare -v ingest`` that admits any vehicle, with no rate limit and no CRM."""
    return Fleetcare("-v", "ingest", "--no-urgent", "--broker", broker_url, "--db",
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

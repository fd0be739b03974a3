"""Onboarding a fleet while ``fleetcare ingest`` runs: the one-writer rule stays intact.

``fleetcare ingest`` (a real process) holds the landing store and reads its register from the
same ``vehicles.csv`` an import reads. An import into the landing store is refused in one line
naming the likely holder; the import into the serving store goes through. A vehicle that is
not in the register is dead-lettered; once a newer export replaces ``vehicles.csv``
(atomically, as a DMS job would) ingest re-reads it and the vehicle's next message lands.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge.sim.masterdata import SimVehicle, write_master_data
from edge.wire import contract
from pipeline.broker.auth import parse_broker_url
from pipeline.ingest.admission import REFRESH_S
from pipeline.store import connection as store
from tests.e2e.replay_helpers import REPO
from tests.polling import wait_until
from tests.processes import cli, cli_env

pytestmark = [pytest.mark.e2e, pytest.mark.broker]

KNOWN, LATE = "ONB00000", "ONB00001"
TIMEOUT_S = 90.0


class Receipts:
    """Every receipt the backend publishes for the test's vehicles, by message id."""

    def __init__(self, broker_url: str) -> None:
        self.outcomes: dict[str, str] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect(*parse_broker_url(broker_url))
        for vehicle in (KNOWN, LATE):
            self.client.subscribe(contract.receipt_topic(vehicle), qos=1)
        self.client.loop_start()

    def _on_message(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        receipt = contract.decode_receipt(bytes(message.payload))
        with self._lock:
            for kind in ("landed", "duplicates", "dead_lettered"):
                for msg_id in getattr(receipt, kind):
                    self.outcomes.setdefault(msg_id, kind)  # the first word counts

    def outcome(self, msg_id: str) -> str | None:
        with self._lock:
            return self.outcomes.get(msg_id)

    def publish(self, vehicle: str, msg_id: str) -> None:
        batch = contract.TelemetryBatch(msg_id, vehicle, [time.time()], ["Vehicle.Speed"],
                                        [42.0])
        self.client.publish(contract.telemetry_topic(vehicle), contract.encode(batch),
                            qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def receipts(broker_url: str) -> Iterator[Receipts]:
    watcher = Receipts(broker_url)
    yield watcher
    watcher.close()


def _has_receipt(receipts: Receipts, msg_id: str) -> bool:
    return receipts.outcome(msg_id) is not None


def _publish_until_landed(receipts: Receipts, vehicle: str, prefix: str,
                          every: float) -> list[str]:
    """Publish fresh messages from ``vehicle``, each once the one before has its receipt and
    ``every`` seconds have passed, until one lands; their ids, in order."""
    tries: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        msg_id = f"{prefix}-{len(tries)}"
        tries.append(msg_id)
        receipts.publish(vehicle, msg_id)
        assert wait_until(partial(_has_receipt, receipts, msg_id), TIMEOUT_S), \
            receipts.outcomes
        if receipts.outcome(msg_id) == "landed":
            return tries
        time.sleep(every)
    raise AssertionError(f"no message from {vehicle} landed within {TIMEOUT_S:g} s: "
                         f"{receipts.outcomes}")


def _write_export(folder: Path, vehicles: list[SimVehicle]) -> dict[str, Path]:
    return write_master_data(folder, vehicles, seed=5, start=dt.date.today())


def test_import_while_ingest_runs_and_a_vehicle_added_to_the_register_lands(
        broker_url: str, receipts: Receipts, tmp_path: Path) -> None:
    landing, serving = tmp_path / "landing.duckdb", tmp_path / "serving.duckdb"
    export = tmp_path / "dms"
    files = _write_export(export, [SimVehicle(KNOWN, "Aurora EV", "north")])
    ingest = subprocess.Popen(
        cli("ingest", "--broker", broker_url, "--db", str(landing), "--client-id",
             f"onboarding-{tmp_path.name}", "--vehicles", str(files["vehicles"]),
             "--customers", str(files["customers"]), "--flush-interval", "0.05"),
        cwd=REPO, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # ingest's session exists once it subscribed: until then a publish reaches nobody
        def answered() -> bool:
            receipts.publish(KNOWN, "m-known")
            return wait_until(lambda: receipts.outcome("m-known") is not None, 2.0)

        assert wait_until(answered, TIMEOUT_S, step=0.0), "ingest did not come up"
        assert receipts.outcome("m-known") == "landed"

        args = ["--vehicles", str(files["vehicles"]), "--customers", str(files["customers"]),
                "--centres", str(files["centres"]), "--capacity", str(files["capacity"]),
                "--catalogue", str(files["catalogue"])]
        held = subprocess.run(cli("fleet", "import", "--db", str(landing), "--wait", "1",
                                   *args), cwd=REPO, env=cli_env(), capture_output=True,
                              text=True, timeout=120)
        assert held.returncode == 1
        (line,) = held.stderr.strip().splitlines()
        assert f"{landing} is held by another process (a running `fleetcare ingest`" in line
        into_serving = subprocess.run(cli("fleet", "import", "--db", str(serving), *args),
                                      cwd=REPO, env=cli_env(), capture_output=True, text=True,
                                      timeout=120)
        assert into_serving.returncode == 0, into_serving.stderr

        receipts.publish(LATE, "m-late-1")
        assert wait_until(lambda: receipts.outcome("m-late-1") is not None, TIMEOUT_S)
        assert receipts.outcome("m-late-1") == "dead_lettered"  # not registered yet

        newer = _write_export(tmp_path / "dms-newer", [SimVehicle(KNOWN, "Aurora EV", "north"),
                                                       SimVehicle(LATE, "Borealis ICE",
                                                                  "south")])
        os.replace(newer["vehicles"], files["vehicles"])  # the DMS job's atomic replace
        # Ingest reloads its register on a miss at most every REFRESH_S: until it has, a
        # message from the new vehicle is dead-lettered (kept, with its reason), then one lands.
        tries = _publish_until_landed(receipts, LATE, "m-late-retry", REFRESH_S / 10)
        assert receipts.outcome(tries[-1]) == "landed", receipts.outcomes
        assert all(receipts.outcome(t) == "dead_lettered" for t in tries[:-1]), \
            receipts.outcomes
    finally:
        ingest.terminate()
        _, stderr = ingest.communicate(timeout=60)
    assert ingest.returncode == 0, stderr
    with store.connect_readonly(landing) as con:
        vehicles = dict(con.execute("SELECT vehicle_id, vin FROM vehicles").fetchall())
        customers = {r[0] for r in con.execute("SELECT customer_id FROM customers").fetchall()}
        landed = con.execute("SELECT count(*) FROM telemetry WHERE vehicle_id = ?",
                             [LATE]).fetchone()
    with newer["vehicles"].parent.joinpath("customers.csv").open(encoding="utf-8") as handle:
        assert {r["customer_id"] for r in csv.DictReader(handle)} >= customers
    assert set(vehicles) == {KNOWN, LATE} and all(vehicles.values())
    assert customers == {f"cust-{KNOWN}"}
    assert landed == (1,)

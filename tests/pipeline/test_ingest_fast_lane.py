"""Critical faults skip the queue: landed and receipted while ordinary telemetry waits.

A real ingest loop on the session's broker (both paho clients), real DuckDB files. The batch
window is 30 s throughout, so every assertion is about order (the critical fault's receipt
arrives while the telemetry published before it is still inside its window), not about how
fast anything is.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pytest

from edge.wire import contract
from pipeline.config import MqttClientKind
from pipeline.ingest.landing import LandResult
from pipeline.ingest.service import FAULT_TOPICS, INFO_TOPICS, Ingestor
from pipeline.leads.urgent import critical_codes
from pipeline.store import connection as store
from tests.contract_subscriber import ContractSubscriber
from tests.pipeline.test_ingest import SIGNALS, T0, Wire, publish, telemetry

pytestmark = pytest.mark.broker

WINDOW: dict[str, Any] = {"flush_interval_s": 30.0, "rate_limit": None,
                          "require_registered_vehicles": False}
"""A batch window no test waits out: what lands before stop() landed because it was urgent."""


def fault(msg_id: str, vehicle: str, code: str, *, cleared: bool = False) -> Wire:
    batch = contract.DtcBatch(msg_id, vehicle, [contract.DtcEvent(T0, code, "active",
                                                                  cleared=cleared)])
    return contract.dtc_topic(vehicle), contract.encode(batch)


class Commits:
    """An ``after_commit`` hook noting what each commit landed (on whichever session)."""

    def __init__(self) -> None:
        self.results: list[LandResult] = []
        self._lock = threading.Lock()

    def __call__(self, con: duckdb.DuckDBPyConnection, result: LandResult) -> None:
        with self._lock:
            self.results.append(result)


def _receipted(heard: ContractSubscriber, msg_id: str) -> bool:
    return any(msg_id in r.msg_ids for r in heard.receipts)


@pytest.mark.parametrize("fault_session", [True, False], ids=["own-session", "one-session"])
def test_a_critical_fault_lands_and_is_receipted_inside_the_telemetrys_window(
        broker_url: str, db_path: Path, mqtt_client: MqttClientKind,
        fault_session: bool) -> None:
    tag = uuid.uuid4().hex[:6]
    vehicle = f"FL-{tag}"
    commits = Commits()
    heard = ContractSubscriber(broker_url, contract.RECEIPT_TOPICS)
    ordinary = [telemetry(f"{tag}-t{i}", vehicle) for i in range(20)]
    mild = fault(f"{tag}-mild", vehicle, "P0A80")  # high, not critical: it waits its turn
    cleared = fault(f"{tag}-clear", vehicle, "C1B01", cleared=True)  # a clear is no alarm
    critical = fault(f"{tag}-crit", vehicle, "P0AA6")
    ingestor = Ingestor(broker_url, db_path, client_id=f"fl-{tag}", after_commit=commits,
                        critical_codes=critical_codes(), fault_session=fault_session,
                        mqtt_client=mqtt_client, **WINDOW).start()
    try:
        publish(broker_url, [*ordinary, mild, cleared])
        assert ingestor.wait_for(lambda s: s.messages_received == 22, timeout=30)
        publish(broker_url, [critical])
        assert heard.wait_for(lambda: _receipted(heard, f"{tag}-crit"), timeout=30)
        early = list(commits.results)
        receipted_early = {i for r in heard.receipts for i in r.msg_ids}
    finally:
        ingestor.stop()
        heard.close()
    everything_else = {f"{tag}-t{i}" for i in range(20)} | {f"{tag}-mild", f"{tag}-clear"}
    if fault_session:
        # Its own session and its own batch: the critical fault (with the other fault codes
        # pending in that batch) was committed while the telemetry waited in its window.
        assert [(r.messages_landed, r.telemetry_rows, r.dtc_rows) for r in early] == [(3, 0, 3)]
        assert receipted_early == {f"{tag}-mild", f"{tag}-clear", f"{tag}-crit"}
        # The telemetry still landed as one batch, at stop: the window was not given up.
        assert [(r.messages_landed, r.telemetry_rows) for r in commits.results[1:]] == [
            (20, 20 * SIGNALS)]
    else:
        # One session: the critical fault lands the batch it joined at once, with everything
        # that came before it, in arrival order.
        assert [(r.messages_landed, r.telemetry_rows, r.dtc_rows) for r in early] == [
            (23, 20 * SIGNALS, 3)]
        assert receipted_early == everything_else | {f"{tag}-crit"}
        assert commits.results == early
    assert early[0].dtc_vehicle_ids == (vehicle,)
    with store.connect_readonly(db_path) as con:
        assert con.execute("SELECT count(*) FROM telemetry").fetchone() == (20 * SIGNALS,)
        assert con.execute("SELECT count(*) FROM dtc_events").fetchone() == (3,)


def test_without_critical_codes_fault_codes_keep_their_window(
        broker_url: str, db_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    commits = Commits()
    with Ingestor(broker_url, db_path, client_id=f"fl-none-{tag}", after_commit=commits,
                  **WINDOW) as ingestor:
        assert ingestor.critical_codes == frozenset()  # the hook names none, nor the caller
        publish(broker_url, [fault(f"{tag}-crit", f"FL-{tag}", "P0AA6")])
        assert ingestor.wait_for(lambda s: s.messages_received == 1, timeout=30)
        assert commits.results == []  # received, waiting for its window
    assert [r.dtc_rows for r in commits.results] == [1]


def test_a_redelivered_critical_fault_lands_once_across_both_sessions(
        mosquitto_url: str, db_path: Path, mqtt_client: MqttClientKind) -> None:
    """A fault code queued for the bulk session before fault codes had their own session
    still lands there; the agent's re-send, on the new session, is a duplicate; and the bulk
    session no longer receives fault codes at all."""
    tag = uuid.uuid4().hex[:6]
    vehicle, client_id = f"FL-{tag}", f"fl-again-{tag}"
    first, second = fault(f"{tag}-one", vehicle, "C1B02"), fault(f"{tag}-two", vehicle, "P0AA6")
    Ingestor(mosquitto_url, db_path, client_id=client_id, fault_session=False,
             mqtt_client=mqtt_client, **WINDOW).start().stop()
    publish(mosquitto_url, [first])  # queued for the offline session, which has every filter
    heard = ContractSubscriber(mosquitto_url, contract.RECEIPT_TOPICS)
    ingestor = Ingestor(mosquitto_url, db_path, client_id=client_id,
                        critical_codes=critical_codes(), mqtt_client=mqtt_client,
                        **WINDOW).start()
    try:
        assert ingestor.topic_filters[-2:] == [FAULT_TOPICS, INFO_TOPICS]
        assert heard.wait_for(lambda: _receipted(heard, f"{tag}-one"), timeout=30)
        publish(mosquitto_url, [first, first, second])  # the agent sends it again, twice
        assert ingestor.wait_for(lambda s: s.duplicates == 2 and s.dtc_rows == 2, timeout=30)
        assert heard.wait_for(lambda: _receipted(heard, f"{tag}-two"), timeout=30)
        stats = ingestor.stats
    finally:
        ingestor.stop()
        heard.close()
    assert (stats.messages_landed, stats.duplicates, stats.dead_letters) == (2, 2, 0)
    assert stats.messages_received == 4  # each copy once: the bulk session dropped the filter
    duplicates = sorted(i for r in heard.receipts for i in r.duplicates)
    assert duplicates == [f"{tag}-one", f"{tag}-one"]
    with store.connect_readonly(db_path) as con:
        rows = con.execute("SELECT msg_id FROM dtc_events ORDER BY msg_id").fetchall()
        ids = con.execute("SELECT count(*) FROM ingested_messages").fetchone()
    assert rows == [(f"{tag}-one",), (f"{tag}-two",)]
    assert ids == (2,)


def test_a_client_certificate_keeps_fault_codes_on_the_one_session(
        broker_url: str, db_path: Path, tmp_path: Path) -> None:
    from pipeline.broker.auth import BackendTls

    tls = BackendTls(tmp_path / "ca.pem", tmp_path / "ingest.pem", tmp_path / "ingest.key")
    ingestor = Ingestor("mqtts://127.0.0.1:8883", db_path, tls=tls)
    assert ingestor.fault_session is False
    assert ingestor.topic_filters == list(contract.INGEST_TOPICS)
    assert Ingestor(broker_url, db_path).topic_filters == [
        *(t for t in contract.INGEST_TOPICS if t not in (FAULT_TOPICS, INFO_TOPICS)),
        FAULT_TOPICS, INFO_TOPICS]


def test_the_bulk_session_gives_way_to_urgent_work_until_it_is_done_or_its_time_is_up(
        ) -> None:
    from pipeline.ingest.session import Priority

    priority = Priority(max_wait_s=600.0)  # longer than any run: only release() ends it
    priority.give_way()  # nothing urgent: returns at once
    order: list[str] = []

    def bulk() -> None:
        priority.give_way()
        order.append("bulk")

    priority.claim()
    waiter = threading.Thread(target=bulk)
    waiter.start()
    order.append("urgent")  # the urgent work, while the bulk session waits
    priority.release()
    waiter.join(30)
    assert order == ["urgent", "bulk"]

    stuck = Priority(max_wait_s=0.01)
    stuck.claim()  # never released (a hook that hangs): the claim runs out all the same
    waiter = threading.Thread(target=stuck.give_way)
    waiter.start()
    waiter.join(30)
    assert not waiter.is_alive()


def test_after_a_critical_fault_the_writer_waits_for_what_its_hook_handed_on(
        db_path: Path) -> None:
    from pipeline.ingest.stats import StatsBoard
    from pipeline.ingest.writer import BatchWriter

    class Handing(Commits):
        """A hook whose delivery runs on a thread of its own, like UrgentLeads'."""

        def __init__(self) -> None:
            super().__init__()
            self.waited: list[float] = []

        def wait_idle(self, timeout: float) -> bool:
            self.waited.append(timeout)
            return True

    hook = Handing()
    with store.connect(db_path) as con:
        writer = BatchWriter(con, StatsBoard(), hook, critical_codes=critical_codes())
        writer.settle(0.2)
        writer.settle(0.0)  # the bulk session's pause is over: nothing to wait for
        BatchWriter(con, StatsBoard(), Commits()).settle(0.2)  # a hook with no threads
    assert hook.waited == [0.2]

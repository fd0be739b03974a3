"""The mutual-TLS ACL and receipts: a vehicle reads only its own, only the backend writes them.

Runs on the broker configuration ``fleetcare pki broker-config`` generates (the
``tls_broker`` fixture of tests/pipeline/test_pki_tls.py), with real certificates.
"""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest

from edge.wire import contract
from tests.pipeline.test_pki_tls import (  # noqa: F401 (tls_broker is a fixture)
    Inbox,
    TlsBroker,
    _client,
    tls_broker,
)

pytestmark = pytest.mark.broker


def _receipt(vehicle: str, msg_id: str) -> bytes:
    return contract.encode_receipt(contract.Receipt(f"r-{msg_id}", vehicle, time.time(),
                                                    landed=[msg_id]))


class Listener:
    """A vehicle's connection subscribed to every receipt topic (the ACL filters per message)."""

    def __init__(self, broker: TlsBroker, name: str) -> None:
        self.receipts: list[tuple[str, contract.Receipt]] = []
        self._cond = threading.Condition()
        self.client = _client(broker, name)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", broker.port)
        self.client.subscribe(contract.RECEIPT_TOPICS, qos=1)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.receipts.append((msg.topic, contract.decode_receipt(bytes(msg.payload))))
            self._cond.notify_all()

    def wait_for(self, msg_id: str, timeout: float = 15) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: any(msg_id in r.landed for _, r in self.receipts), timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _publish_all(client: mqtt.Client, wires: list[tuple[str, bytes]]) -> None:
    for info in [client.publish(topic, payload, qos=1) for topic, payload in wires]:
        info.wait_for_publish(10)
        assert info.is_published()  # a denied publish is acknowledged too, then dropped


def test_a_vehicle_reads_only_its_own_receipts_and_only_the_backend_writes_them(
        tls_broker: TlsBroker) -> None:  # noqa: F811 (the imported fixture)
    v1 = Listener(tls_broker, "V1")
    inbox = Inbox(tls_broker)  # the backend reads fleetcare/v1/#: it would see any receipt
    backend = _client(tls_broker, "fleetcare-ingest")
    backend.connect("127.0.0.1", tls_broker.port)
    backend.loop_start()
    forger = _client(tls_broker, "V2")
    forger.connect("127.0.0.1", tls_broker.port)
    forger.loop_start()
    try:
        # The backend's receipts: V2's first, then V1's, in order on one connection, so once
        # V1 has its own it would have had V2's too, had the ACL let it read them.
        _publish_all(backend, [(contract.receipt_topic("V2"), _receipt("V2", "for-v2")),
                               (contract.receipt_topic("V1"), _receipt("V1", "for-v1"))])
        assert v1.wait_for("for-v1")
        assert [topic for topic, _ in v1.receipts] == [contract.receipt_topic("V1")]

        # A vehicle writing receipts (for another, or for itself) is dropped by the broker:
        # its telemetry, published after them on the same connection, arrives; they do not.
        _publish_all(forger, [(contract.receipt_topic("V1"), _receipt("V1", "forged")),
                              (contract.receipt_topic("V2"), _receipt("V2", "self-forged")),
                              (contract.telemetry_topic("V2"), b"after the forgeries")])
        assert inbox.wait_for(contract.telemetry_topic("V2"))
        assert inbox.topics.count(contract.receipt_topic("V1")) == 1  # the backend's alone
        assert inbox.topics.count(contract.receipt_topic("V2")) == 1
        assert not any("forged" in r.landed for _, r in v1.receipts)
    finally:
        for client in (backend, forger):
            client.loop_stop()
            client.disconnect()
        inbox.close()
        v1.close()

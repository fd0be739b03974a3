"""A real MQTT subscriber for tests: keeps every contract message arriving on a topic filter.

Edge tests check what the agent and publisher put on the wire by subscribing to the same
local broker the agent publishes to, as the backend would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edge.publish import parse_mqtt_url
from edge.wire import contract


class ContractSubscriber:
    """Subscribes at QoS 1 to ``topic`` and decodes each payload with the wire contract.

    Receipts (backend to vehicle, when a filter takes in a receipt topic) are kept apart in
    ``receipts``: ``messages`` holds what vehicles sent.
    """

    def __init__(self, broker_url: str, topic: str) -> None:
        host, port = parse_mqtt_url(broker_url)
        self.messages: list[contract.Message] = []
        self.receipts: list[contract.Receipt] = []
        self._cond = threading.Condition()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self._client.on_message = self._on_message
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: subscribed.set()
        self._client.connect(host, port)
        self._client.subscribe(topic, qos=1)
        self._client.loop_start()
        if not subscribed.wait(10):
            self.close()
            raise TimeoutError(f"no SUBACK for {topic} from {broker_url} within 10 s")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            if msg.topic.rsplit("/", 1)[-1] == "receipt":
                self.receipts.append(contract.decode_receipt(bytes(msg.payload)))
            else:
                self.messages.append(contract.decode(bytes(msg.payload)))
            self._cond.notify_all()

    def wait_for(self, done: Callable[[], bool], timeout: float = 20.0) -> bool:
        """Wait until ``done()`` holds (checked on every message); whether it did."""
        with self._cond:
            return self._cond.wait_for(done, timeout)

    def signals(self) -> int:
        """Telemetry samples received so far."""
        return sum(len(m.ts) for m in self.messages if isinstance(m, contract.TelemetryBatch))

    def health_reports(self) -> list[contract.HealthReport]:
        """Health reports received so far, in arrival order."""
        return [m for m in self.messages if isinstance(m, contract.HealthReport)]

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

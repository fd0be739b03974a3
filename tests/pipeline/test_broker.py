"""The embedded broker really serves MQTT, and broker URLs are parsed or refused clearly."""

from __future__ import annotations

import queue
import socket
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pipeline.broker.auth import parse_broker_url
from pipeline.broker.harness import EmbeddedBroker, find_mosquitto
from pipeline.errors import BrokerError


def round_trip(url: str, topic: str, payload: bytes) -> bytes:
    """Subscribe, publish at QoS 1 and return what came back (within 10 s)."""
    host, port = parse_broker_url(url)
    received: queue.Queue[bytes] = queue.Queue()
    subscribed: queue.Queue[bool] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe(topic, qos=1)

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.put(True)
    client.on_message = lambda c, u, msg: received.put(bytes(msg.payload))
    client.connect(host, port)
    client.loop_start()
    try:
        subscribed.get(timeout=10)
        client.publish(topic, payload, qos=1).wait_for_publish(timeout=10)
        return received.get(timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.mark.broker
def test_session_broker_round_trips_a_message(broker_url: str) -> None:
    assert round_trip(broker_url, "fleetcare/test/echo", b"hello") == b"hello"


@pytest.mark.broker
@pytest.mark.skipif(find_mosquitto() is None, reason="mosquitto is not installed")
def test_mosquitto_is_preferred_when_installed() -> None:
    with EmbeddedBroker() as broker:
        assert broker.kind == "mosquitto"
        assert broker.url.startswith("mqtt://127.0.0.1:")


@pytest.mark.broker
def test_amqtt_serves_when_asked_for() -> None:
    with EmbeddedBroker(prefer="amqtt") as broker:
        assert broker.kind == "amqtt"
        assert round_trip(broker.url, "fleetcare/test/amqtt", b"\x00\x01") == b"\x00\x01"


@pytest.mark.broker
def test_stop_frees_the_port() -> None:
    broker = EmbeddedBroker().start()
    host, port = parse_broker_url(broker.url)
    broker.stop()

    with pytest.raises(OSError), socket.create_connection((host, port), timeout=1):
        pass
    with pytest.raises(BrokerError, match="not started"):
        _ = broker.url


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://127.0.0.1:1883", ("127.0.0.1", 1883)),
    ("tcp://broker.example:8883", ("broker.example", 8883)),
    ("localhost:1884", ("localhost", 1884)),
    (" mqtt://10.0.0.7:1883/ ", ("10.0.0.7", 1883)),
    ("mqtt://127.0.0.1", ("127.0.0.1", 1883)),
    ("mqtts://broker.example", ("broker.example", 8883)),
    ("mqtts://ingest:pw@broker.example:8884", ("broker.example", 8884)),
])
def test_parse_broker_url_accepts_the_documented_forms(url: str,
                                                       expected: tuple[str, int]) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:1883", "scheme 'http'"),
    ("mqtt://:1883", "has no host"),
    ("127.0.0.1:port", "invalid port"),
    ("mqtt://127.0.0.1:99999", "invalid port"),
    ("mqtt://127.0.0.1:0", "invalid port"),
    ("mqtt://127.0.0.1:1883/fleet", "a path, query or fragment"),
])
def test_parse_broker_url_says_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(BrokerError, match=message):
        parse_broker_url(url)


def test_unknown_preference_is_refused() -> None:
    with pytest.raises(BrokerError, match="'auto', 'mosquitto' or 'amqtt'"):
        EmbeddedBroker(prefer="emqx")

"""Fixtures of the backend's tests: which paho client ingest runs on.

Ingest has two MQTT clients (``FLEETCARE_PIPELINE__MQTT_CLIENT``): the fast one, which
overrides paho internals, and paho's stock ``Client``, the fallback when a paho upgrade
breaks those internals. A fallback nobody runs is no fallback, so every test that takes the
``mqtt_client`` fixture proves its delivery guarantee on both.
"""

from __future__ import annotations

from typing import get_args

import pytest

from pipeline.config import MqttClientKind

MQTT_CLIENTS: tuple[MqttClientKind, ...] = get_args(MqttClientKind)


@pytest.fixture(params=MQTT_CLIENTS)
def mqtt_client(request: pytest.FixtureRequest) -> MqttClientKind:
    """The ingest client under test: the test runs once per client (ids ``fast``, ``stock``)."""
    kind: MqttClientKind = request.param
    return kind

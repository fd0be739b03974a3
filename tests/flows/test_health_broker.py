"""The ``health`` flow as deployed (``check_broker``) fails when the broker it is configured
for has acknowledged and dropped messages: real mosquitto with the generated configuration
(a queue of 5 for the test), the broker named the way the deployment reads it (settings)."""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from flow_fixtures import Stores
from paho.mqtt.enums import CallbackAPIVersion

from edge.wire import contract
from flows.scheduled.config import load_flow_settings
from flows.scheduled.deployments import flow_parameters
from flows.scheduled.health import health_flow
from pipeline.broker.auth import parse_broker_url
from pipeline.broker.counters import read_broker_counters
from pipeline.broker.harness import EmbeddedBroker, find_mosquitto
from pipeline.broker.limits import DEFAULT_LIMITS
from tests.pipeline.broker_processes import WAIT_S, close, connected, publish_all, telemetry
from tests.polling import poll

pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")]


def paths(stores: Stores) -> dict[str, Any]:
    return {"serving_path": stores.serving, "snapshot_path": stores.snapshot}


def test_the_deployed_health_flow_fails_when_the_broker_dropped_messages(
        stores: Stores, prefect_harness: None) -> None:
    deployed = flow_parameters("health", load_flow_settings(
        serving_path=stores.serving, snapshot_path=stores.snapshot), "")
    assert deployed["check_broker"] is True
    limits = dataclasses.replace(DEFAULT_LIMITS, max_queued_messages=5, sys_interval_s=1)
    with EmbeddedBroker(prefer="mosquitto", limits=limits) as broker:
        os.environ["FLEETCARE_PIPELINE__BROKER_URL"] = broker.url
        assert health_flow(**paths(stores), check_broker=True)  # nothing dropped yet

        host, port = parse_broker_url(broker.url)
        offline = connected(mqtt.Client(CallbackAPIVersion.VERSION2, clean_session=False,
                                        client_id=f"off-{uuid.uuid4().hex[:8]}"), host, port)
        subscribed = threading.Event()
        offline.on_subscribe = lambda *a: subscribed.set()
        offline.subscribe(contract.telemetry_topic("VFLOW"), qos=1)
        assert subscribed.wait(WAIT_S)
        close(offline)
        publisher = connected(mqtt.Client(CallbackAPIVersion.VERSION2), host, port)
        publish_all(publisher, [telemetry(f"f{i}", "VFLOW") for i in range(12)])
        close(publisher)
        poll("7 drops counted", lambda: (read_broker_counters(broker.url).dropped or 0) >= 7)

        state = health_flow(**paths(stores), check_broker=True, return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="the broker dropped 7 acknowledged messages since "
                                        "the last check"):
        state.result()

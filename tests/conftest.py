"""Fixtures shared by every test package: a real MQTT broker, a DuckDB file, a clean env.

Only what lives outside the process is provided, and for real: one broker for the whole
session (mosquitto when installed, since every delivery guarantee must hold against it)
and a fresh DuckDB file per test.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.broker.harness import EmbeddedBroker, find_mosquitto

log = logging.getLogger(__name__)


BROKER_ENV = "FLEETCARE_TEST_BROKER"
"""Set to "amqtt" or "mosquitto" to force a broker; the default "auto" prefers mosquitto."""


def _preferred_broker() -> str:
    return os.environ.get(BROKER_ENV, "auto")


def pytest_report_header(config: pytest.Config) -> str:
    """Say up front which broker the ``broker`` tests will run against."""
    exe = find_mosquitto() if _preferred_broker() != "amqtt" else None
    chosen = f"mosquitto ({exe})" if exe else "amqtt (embedded)"
    return f"fleetcare test broker: {chosen}; set {BROKER_ENV}=amqtt|mosquitto to choose"


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """One broker on 127.0.0.1 for the whole session: mosquitto when found, else amqtt."""
    with EmbeddedBroker(prefer=_preferred_broker()) as broker:
        log.info("test broker: %s at %s", broker.kind, broker.url)
        yield broker


@pytest.fixture(scope="session")
def broker_url(embedded_broker: EmbeddedBroker) -> str:
    """``mqtt://127.0.0.1:PORT`` of the session's broker."""
    return embedded_broker.url


@pytest.fixture
def mosquitto_url(embedded_broker: EmbeddedBroker) -> str:
    """The session broker's URL when it is mosquitto; skips the test otherwise.

    amqtt 0.12.1 neither queues QoS 1 messages for an offline persistent session
    (docs/design.md) nor serves shared subscriptions, and every delivery guarantee must be
    proven against mosquitto anyway.
    """
    if embedded_broker.kind != "mosquitto":
        pytest.skip("needs mosquitto: amqtt has no offline queueing or shared subscriptions")
    return embedded_broker.url


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Path of a DuckDB file private to this test (not created yet)."""
    return tmp_path / "fleet.duckdb"


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """Undo any change a test makes to os.environ, so tests cannot leak config."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Flows run against a throwaway local Prefect server and database for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield

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

from pipeline.broker import EmbeddedBroker, find_mosquitto

log = logging.getLogger(__name__)


def pytest_report_header(config: pytest.Config) -> str:
    """Say up front which broker the ``broker`` tests will run against."""
    exe = find_mosquitto()
    return f"fleetcare broker: {f'mosquitto ({exe})' if exe else 'amqtt (mosquitto not found)'}"


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    """URL of a broker on 127.0.0.1 that lives for the whole test session."""
    with EmbeddedBroker(prefer="auto") as broker:
        log.info("test broker: %s at %s", broker.kind, broker.url)
        yield broker.url


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

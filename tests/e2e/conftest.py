"""Prefect's test harness for the end-to-end tests: a real, temporary local Prefect server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Flows run against a throwaway Prefect server and database for the whole session."""
    with prefect_test_harness(server_startup_timeout=120):
        yield

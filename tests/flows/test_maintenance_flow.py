"""The maintenance flow under Prefect's test harness: clear failures, no double writes."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.states import State

from flows.demo.maintenance import maintenance_flow
from pipeline.store import connection as store


def test_empty_store_fails_the_run_with_a_clear_message(
    db_path: Path, prefect_harness: None
) -> None:
    store.connect(db_path).close()
    state = maintenance_flow(str(db_path), "http://127.0.0.1:9/leads", return_state=True)
    assert isinstance(state, State) and state.is_failed()
    with pytest.raises(Exception, match="no labelled") as raised:
        state.result()
    assert "NotEnoughData" in type(raised.value).__name__

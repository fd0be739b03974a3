"""The broker goes away mid-run: the agent keeps reading and spooling, then drains.

The issue asks for a 30 s outage; here it is scaled down to 3 s of bus time (the agent reads
at the recorded pace, so the outage lasts while 3 s of the recording go by), which exercises
the same paths: failed publishes, reconnect with backoff, draining the spool afterwards.
"""

from __future__ import annotations

import tempfile
import threading
import uuid
from pathlib import Path

import pytest

from edge.config import load_edge_settings
from edge.runtime import assemble
from edge.source import ReplaySource
from pipeline.broker.harness import EmbeddedBroker, find_mosquitto, free_port
from pipeline.ingest.service import Ingestor
from tests.e2e.replay_helpers import KONA_DBC, KONA_LOG, expected_signals, rows_of
from tests.polling import wait_until

OUTAGE_BUS_S = 3.0


@pytest.mark.e2e
@pytest.mark.broker
@pytest.mark.slow
def test_broker_outage_loses_nothing_and_doubles_nothing(db_path: Path, tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("needs mosquitto: the outage must keep the ingest session's queue")
    vehicle = f"OUTAGE-{uuid.uuid4().hex[:6]}"
    expected = expected_signals([KONA_LOG], [KONA_DBC], tmp_path / "expected")
    # mosquitto started as root drops to its own user: it must be able to reach and write its
    # persistence file, or the ingest session's queue dies with the broker (pytest's tmp_path
    # sits in a 0700 directory, so a directory of its own under the system temp dir).
    holder = tempfile.TemporaryDirectory(prefix="fleetcare-outage-")
    data_dir = Path(holder.name)
    data_dir.chmod(0o777)
    port = free_port()
    broker = EmbeddedBroker(port=port, prefer="mosquitto", data_dir=data_dir).start()
    ingestor = Ingestor(broker.url, db_path, client_id=f"ingest-{vehicle}",
                        require_registered_vehicles=False, rate_limit=None).start()
    settings = load_edge_settings(
        vehicle_id=vehicle, interface="replay", channel=str(KONA_LOG), dbc=[KONA_DBC],
        broker_url=broker.url, spool_dir=tmp_path / "spool", replay_speed=1.0,
        reconnect_min_s=1, reconnect_max_s=2, spool_fsync=False)
    parts = assemble(settings)
    stop = threading.Event()
    reader = threading.Thread(target=parts.agent.run, args=(stop,))
    parts.publisher.start()
    reader.start()
    try:
        assert ingestor.wait_for(lambda s: s.telemetry_rows > 0, timeout=30)
        broker.stop()
        assert isinstance(parts.source, ReplaySource)
        down_at = parts.source.position
        # While the broker is away the agent keeps reading and spooling.
        assert wait_until(lambda: parts.agent.stats().frames_read >= down_at + 1900 * OUTAGE_BUS_S
                     or parts.source.exhausted, timeout=30)
        assert parts.spool.stats().pending > 0  # waiting on disk for the broker
        broker = EmbeddedBroker(port=port, prefer="mosquitto", data_dir=data_dir).start()
        reader.join(timeout=60)
        assert parts.publisher.wait_drained(60)
        assert parts.publisher.stats().reconnects >= 1
        assert ingestor.wait_for(lambda s: s.telemetry_rows >= expected, timeout=60)
    finally:
        stop.set()
        reader.join(timeout=30)
        parts.publisher.stop()
        parts.spool.close()
        ingestor.stop()
        broker.stop()
        holder.cleanup()
    assert parts.agent.stats().signals_spooled == expected
    assert rows_of(db_path, vehicle)[0] == expected  # nothing lost, nothing doubled

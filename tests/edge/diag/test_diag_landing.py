"""Diagnostics land like any telemetry: agent spool -> MQTT (real broker) -> ingest -> DuckDB."""

from __future__ import annotations

import uuid
from pathlib import Path

import can
import duckdb
import pytest
from diag_helpers import LEAF_LOG, OBD_LOG, make_agent

from edge.diag.taps import make_taps
from edge.publish import Publisher
from pipeline.ingest.service import Ingestor

pytestmark = [pytest.mark.broker,
              pytest.mark.skipif(not OBD_LOG.exists(), reason="../shared/data is not present")]


def _frames() -> list[can.Message]:
    obd = list(can.LogReader(str(OBD_LOG)))[:4000]
    t = obd[-1].timestamp
    codes = [can.Message(arbitration_id=0x7E8, data=bytes.fromhex("0643020A80056200"),
                         is_extended_id=False, timestamp=t + 1),             # mode 03
             can.Message(arbitration_id=0x7E8, data=bytes.fromhex("03470000"),
                         is_extended_id=False, timestamp=t + 2),             # 07: none
             can.Message(arbitration_id=0x18FECA3D, is_extended_id=True, timestamp=t + 3,
                         data=bytes([0x04, 0xFF, 110, 0, 0, 2, 0xFF, 0xFF]))]  # DM1 110:0
    return obd + codes + list(can.LogReader(str(LEAF_LOG)))[:1500]


def test_pids_codes_and_battery_data_land_in_the_store(broker_url: str, tmp_path: Path,
                                                       db_path: Path) -> None:
    vehicle = f"VDIAG{uuid.uuid4().hex[:8]}"
    bus = can.Bus(interface="virtual", channel=f"landing-{vehicle}")
    agent, spool = make_agent(bus, tmp_path / "spool", make_taps(["obd", "j1939", "uds"]),
                              vehicle)
    publisher = Publisher(spool, broker_url, client_id=f"pub-{vehicle}")
    ingest_id = f"ingest-{vehicle}"
    with Ingestor(broker_url, db_path, client_id=ingest_id, flush_interval_s=0.05,
                  require_registered_vehicles=False) as ingestor:
        publisher.start()
        try:
            for frame in _frames():
                agent.process(frame)
            agent.flush()
            assert publisher.wait_drained(30)
        finally:
            publisher.stop()
            bus.shutdown()
        stats = agent.stats()
        assert ingestor.wait_for(lambda s: s.messages_landed >= stats.messages_spooled, 30)
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        rows = con.execute("SELECT count(*) FROM telemetry WHERE vehicle_id = ?",
                           [vehicle]).fetchone()
        signals = {r[0] for r in con.execute(
            "SELECT DISTINCT signal FROM telemetry WHERE vehicle_id = ?", [vehicle]).fetchall()}
        dtcs = con.execute(
            "SELECT code, status, ecu, source, cleared, description FROM dtc_events "
            "WHERE vehicle_id = ? ORDER BY ts, code", [vehicle]).fetchall()
    finally:
        con.close()
    assert rows is not None and rows[0] == stats.signals_spooled > 0
    assert {"Vehicle.Speed", "Vehicle.Powertrain.CombustionEngine.Speed", "OBD.THROTTLE_POS",
            "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current",
            "J1939.DM1.SA3D.AmberWarningLamp"} <= signals
    assert dtcs == [
        ("P0562", "stored", "0x7E8", "obd", False, "System voltage low"),
        ("P0A80", "stored", "0x7E8", "obd", False, "Replace hybrid/EV battery pack"),
        ("110:0", "active", "0x3D", "j1939", False,
         "SPN 110, FMI 0: data valid but above normal range, most severe"),
    ]

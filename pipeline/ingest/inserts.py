"""Bulk inserts into the store: every table's rows go in as one Arrow table per statement.

DuckDB takes millions of rows per second through ``INSERT ... SELECT`` from Arrow and about
two thousand row by row (docs/design.md), so nothing here loops over rows in SQL. Each function
takes messages that already passed validation and deduplication; the caller owns the
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Final

import duckdb
import orjson
import pyarrow as pa

from edge.wire import contract
from pipeline.ingest.columnar import telemetry_table


def insert_arrow(con: duckdb.DuckDBPyConnection, table: pa.Table, sql: str) -> None:
    """Run ``sql`` with ``table`` visible as ``batch``; the one bulk path for every table."""
    con.register("batch", table)
    try:
        con.execute(sql)
    except duckdb.Error:
        # The transaction is aborted and refuses even unregister; the next register of
        # "batch" replaces this one. Raise the error that says what went wrong.
        with suppress(duckdb.Error):
            con.unregister("batch")
        raise
    con.unregister("batch")


def insert_telemetry(con: duckdb.DuckDBPyConnection, rows: pa.RecordBatch,
                     counts: Sequence[int], vehicle_ids: Sequence[str],
                     msg_ids: Sequence[str]) -> int:
    """Insert the samples of several messages (``counts[i]`` rows of ``rows`` belong to
    message i, in order) in one statement; returns the row count."""
    if not counts or rows.num_rows == 0:
        return 0
    table = telemetry_table(rows, counts, vehicle_ids, msg_ids)
    insert_arrow(con, table, "INSERT INTO telemetry (vehicle_id, ts, signal, value, msg_id) "
                 "SELECT vehicle_id, to_timestamp(ts), signal, value, msg_id FROM batch")
    return table.num_rows


def insert_dtc(con: duckdb.DuckDBPyConnection, batches: Sequence[contract.DtcBatch]) -> int:
    """Insert every fault-code event of ``batches``; returns the row count."""
    rows = [(b.vehicle_id, b.msg_id, e) for b in batches for e in b.events]
    if not rows:
        return 0
    table = pa.table({
        "vehicle_id": pa.array([r[0] for r in rows], pa.string()),
        "ts": pa.array([r[2].ts for r in rows], pa.float64()),
        "code": pa.array([r[2].code for r in rows], pa.string()),
        "status": pa.array([r[2].status for r in rows], pa.string()),
        "ecu": pa.array([r[2].ecu for r in rows], pa.string()),
        "source": pa.array([r[2].source for r in rows], pa.string()),
        "cleared": pa.array([r[2].cleared for r in rows], pa.bool_()),
        "msg_id": pa.array([r[1] for r in rows], pa.string()),
        "first_seen": pa.array([r[2].first_seen for r in rows], pa.float64()),
        "last_seen": pa.array([r[2].last_seen for r in rows], pa.float64()),
        "description": pa.array([r[2].description for r in rows], pa.string()),
    })
    insert_arrow(con, table, "INSERT INTO dtc_events (vehicle_id, ts, code, status, ecu, "
                 "source, cleared, msg_id, first_seen, last_seen, description) SELECT "
                 "vehicle_id, to_timestamp(ts), code, status, ecu, source, cleared, msg_id, "
                 "to_timestamp(first_seen), to_timestamp(last_seen), description FROM batch")
    return len(rows)


def insert_health(con: duckdb.DuckDBPyConnection,
                  reports: Sequence[contract.HealthReport]) -> int:
    """Insert agent health reports into ``edge_health``; returns the row count."""
    if not reports:
        return 0
    insert_arrow(con, pa.table({
        "vehicle_id": pa.array([r.vehicle_id for r in reports], pa.string()),
        "ts": pa.array([r.ts for r in reports], pa.float64()),
        "online": pa.array([r.online for r in reports], pa.bool_()),
        "counters": pa.array([orjson.dumps(r.counters).decode() for r in reports], pa.string()),
        "msg_id": pa.array([r.msg_id for r in reports], pa.string()),
    }), "INSERT INTO edge_health (vehicle_id, ts, online, counters, msg_id) "
        "SELECT vehicle_id, to_timestamp(ts), online, counters::JSON, msg_id FROM batch")
    return len(reports)


def insert_vehicle_info(con: duckdb.DuckDBPyConnection,
                        reports: Sequence[contract.VehicleInfo]) -> int:
    """Record vehicle-info reports in ``vehicle_info``; returns the reports recorded.

    A vehicle has one row per distinct report (VIN, how it was read, agent version,
    fingerprints): a report the store knows moves that row's ``first_seen``/``last_seen``,
    adds to its ``reports`` and takes its ``msg_id`` when it is the latest; a new one adds a
    row. Identical reports within the batch are folded first, so each statement touches a
    row at most once.
    """
    if not reports:
        return 0
    groups: dict[tuple[str, str | None, str, str, str, str], list[contract.VehicleInfo]] = {}
    for r in reports:
        key = (r.vehicle_id, r.vin, r.vin_source, r.agent_version,
               orjson.dumps(r.dbc_fingerprints, option=orjson.OPT_SORT_KEYS).decode(),
               r.rules_fingerprint)
        groups.setdefault(key, []).append(r)
    latest = [max(group, key=lambda r: r.ts) for group in groups.values()]
    table = pa.table({
        "vehicle_id": pa.array([k[0] for k in groups], pa.string()),
        "vin": pa.array([k[1] for k in groups], pa.string()),
        "vin_source": pa.array([k[2] for k in groups], pa.string()),
        "agent_version": pa.array([k[3] for k in groups], pa.string()),
        "dbc_fingerprints": pa.array([k[4] for k in groups], pa.string()),
        "rules_fingerprint": pa.array([k[5] for k in groups], pa.string()),
        "first_seen": pa.array([min(r.ts for r in g) for g in groups.values()], pa.float64()),
        "last_seen": pa.array([r.ts for r in latest], pa.float64()),
        "reports": pa.array([len(g) for g in groups.values()], pa.int32()),
        "msg_id": pa.array([r.msg_id for r in latest], pa.string()),
    })
    insert_arrow(con, table, _INFO_UPDATE)
    insert_arrow(con, table, _INFO_INSERT)
    return len(reports)


_INFO_SAME: Final = """
    t.vehicle_id = b.vehicle_id AND t.vin IS NOT DISTINCT FROM b.vin
    AND t.vin_source = b.vin_source AND t.agent_version = b.agent_version
    AND CAST(t.dbc_fingerprints AS VARCHAR) = b.dbc_fingerprints
    AND t.rules_fingerprint = b.rules_fingerprint
"""
_INFO_UPDATE: Final = f"""
    UPDATE vehicle_info AS t SET
        first_seen = least(t.first_seen, to_timestamp(b.first_seen)),
        last_seen = greatest(t.last_seen, to_timestamp(b.last_seen)),
        msg_id = CASE WHEN to_timestamp(b.last_seen) >= t.last_seen THEN b.msg_id
                      ELSE t.msg_id END,
        reports = t.reports + b.reports
    FROM batch AS b WHERE {_INFO_SAME}
"""
_INFO_INSERT: Final = f"""
    INSERT INTO vehicle_info (vehicle_id, vin, vin_source, agent_version, dbc_fingerprints,
                              rules_fingerprint, first_seen, last_seen, reports, msg_id)
    SELECT vehicle_id, vin, vin_source, agent_version, CAST(dbc_fingerprints AS JSON),
           rules_fingerprint, to_timestamp(first_seen), to_timestamp(last_seen), reports, msg_id
    FROM batch AS b WHERE NOT EXISTS (SELECT 1 FROM vehicle_info AS t WHERE {_INFO_SAME})
"""


def insert_truth(con: duckdb.DuckDBPyConnection, records: Sequence[contract.TruthRecord]) -> int:
    """Upsert ground truth and the vehicles it names; returns the component rows."""
    if not records:
        return 0
    # An upsert may not touch one key twice in a statement: the batch's last record wins.
    rows = {(r.vehicle_id, c.component): (r, c) for r in records for c in r.components}
    if rows:
        insert_arrow(con, pa.table({
            "vehicle_id": pa.array([k[0] for k in rows], pa.string()),
            "component": pa.array([k[1] for k in rows], pa.string()),
            "failure_ts": pa.array([c.failure_ts for _, c in rows.values()], pa.float64()),
            "health_at_end": pa.array([c.health_at_end for _, c in rows.values()], pa.float64()),
            "sim_start_ts": pa.array([r.sim_start_ts for r, _ in rows.values()], pa.float64()),
            "sim_end_ts": pa.array([r.sim_end_ts for r, _ in rows.values()], pa.float64()),
            "msg_id": pa.array([r.msg_id for r, _ in rows.values()], pa.string()),
        }), _TRUTH_UPSERT)
    _upsert_vehicles(con, records)
    return sum(len(r.components) for r in records)


_TRUTH_UPSERT: Final = """
    INSERT INTO ground_truth (vehicle_id, component, failure_ts, health_at_end, sim_start_ts,
                              sim_end_ts, msg_id)
    SELECT vehicle_id, component, to_timestamp(failure_ts), health_at_end,
           to_timestamp(sim_start_ts), to_timestamp(sim_end_ts), msg_id FROM batch
    ON CONFLICT (vehicle_id, component) DO UPDATE SET
        failure_ts = excluded.failure_ts, health_at_end = excluded.health_at_end,
        sim_start_ts = excluded.sim_start_ts, sim_end_ts = excluded.sim_end_ts,
        msg_id = excluded.msg_id
"""


def _upsert_vehicles(con: duckdb.DuckDBPyConnection,
                     records: Sequence[contract.TruthRecord]) -> None:
    # Only model and region come from the simulator; customer and centre belong to the CRM
    # side and must survive a new truth record, hence DO UPDATE rather than REPLACE; and a
    # vehicle `fleetcare fleet import` registered keeps the register's model and region.
    latest = {r.vehicle_id: r for r in records}
    insert_arrow(con, pa.table({
        "vehicle_id": pa.array(list(latest), pa.string()),
        "model": pa.array([r.model for r in latest.values()], pa.string()),
        "region": pa.array([r.region for r in latest.values()], pa.string()),
    }), "INSERT INTO vehicles (vehicle_id, model, region) SELECT vehicle_id, model, region "
        "FROM batch ON CONFLICT (vehicle_id) DO UPDATE SET model = excluded.model, "
        "region = excluded.region WHERE vehicles.imported_at IS NULL")


def insert_ingested(con: duckdb.DuckDBPyConnection, msg_ids: Sequence[str],
                    vehicle_ids: Sequence[str], kinds: Sequence[str], topics: Sequence[str],
                    n_rows: Sequence[int]) -> None:
    """Record landed message ids: the rows that make a redelivery land nothing."""
    if not msg_ids:
        return
    insert_arrow(con, pa.table({
        "msg_id": pa.array(msg_ids, pa.string()),
        "vehicle_id": pa.array(vehicle_ids, pa.string()),
        "kind": pa.array(kinds, pa.string()),
        "topic": pa.array(topics, pa.string()),
        "n_rows": pa.array(n_rows, pa.int32()),
    }), "INSERT INTO ingested_messages (msg_id, vehicle_id, kind, topic, n_rows) "
        "SELECT msg_id, vehicle_id, kind, topic, n_rows FROM batch")


def insert_dead_letters(con: duckdb.DuckDBPyConnection, received_at: Sequence[float],
                        topics: Sequence[str], reasons: Sequence[str],
                        payloads: Sequence[bytes], sizes: Sequence[int],
                        sha256s: Sequence[str]) -> None:
    """Keep messages that cannot land, with where they came from and why.

    ``payloads`` are the bytes to keep (the whole payload, or the head of an oversize one:
    :func:`pipeline.ingest.landing.store_dead_letters` decides), ``sizes`` and ``sha256s``
    describe the whole payload as it was published.
    """
    if not topics:
        return
    insert_arrow(con, pa.table({
        "received_at": pa.array(received_at, pa.float64()),
        "topic": pa.array(topics, pa.string()),
        "reason": pa.array(reasons, pa.string()),
        "payload": pa.array(payloads, pa.binary()),
        "payload_bytes": pa.array(sizes, pa.int64()),
        "payload_sha256": pa.array(sha256s, pa.string()),
    }), "INSERT INTO dead_letters (received_at, topic, reason, payload, payload_bytes, "
        "payload_sha256) SELECT to_timestamp(received_at), topic, reason, payload, "
        "payload_bytes, payload_sha256 FROM batch")

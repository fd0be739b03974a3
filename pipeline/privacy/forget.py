"""Forgetting a customer: their personal data out of every table and file fleetcare keeps.

Where personal data lives (the audit behind ``fleetcare forget``):

* ``customers`` (name, e-mail, phone) is the one table that holds it by design; ``vehicles``
  links a vehicle to it by ``customer_id``. Telemetry, fault codes, agent health, ground truth,
  dead letters (raw MQTT payloads), features, scores and the Parquet exports carry vehicle ids
  only.
* A lead copies the customer block (id, name, e-mail, phone) when it is built, because the
  service centre has to call someone: ``leads.document`` and ``outbox.body`` (the exact JSON
  the CRM receives) keep that copy.
* Advisors' free text (``reason``/``work_done`` of the CRM's status updates, kept in
  ``lead_events.detail`` and ``lead_outcomes.reason``) and a CRM's refusal quoted in
  ``outbox.last_error`` may name the customer too.

:func:`forget_vehicle` erases all of it on one store in one transaction and records it in
``erasure_log`` (a hash of each customer id, never the data). The customers forgotten are the
vehicle's owner and whoever a lead for the vehicle named, and with them every vehicle they own
loses its link and every lead that names them its customer block. Leads and outbox rows stay:
they are the service history and the models' labels, and a pending row is still delivered,
without the customer. With ``telemetry`` the vehicle's own measurements go too (telemetry,
fault codes, health reports, ground truth, features, scores, dead letters and the vehicle's
Parquet partitions).

Files cannot join a DuckDB transaction, so the Parquet partitions move first into
``<exports>/_forgotten/<erasure_id>/`` (out of every reader's glob), the transaction commits,
and only then is that folder deleted. A crash in between is settled by the next forget: a
folder whose erasure is recorded is deleted, one whose erasure never committed goes back.

:mod:`pipeline.privacy.erasure` runs this on the landing and the serving store, rewrites the
snapshot, the CRM inbox and the store files (DuckDB keeps deleted values in free blocks).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import duckdb

from pipeline.errors import TerminalPipelineError, TransientPipelineError
from pipeline.fleet.forgotten import customer_hash
from pipeline.store import connection as store
from pipeline.store import export

ERASED: Final = "[erased]"
"""What replaces free text that may name a forgotten customer."""
FREE_TEXT_KEYS: Final = ("reason", "work_done")
"""Status-update fields written by an advisor (see ``status_update.schema.json``)."""
TELEMETRY_TABLES: Final = ("telemetry", "dtc_events", "edge_health", "vehicle_info",
                           "ground_truth", "daily_features", "scores")
"""The vehicle's own measurements and what is derived from them (``--telemetry``)."""
TRASH: Final = "_forgotten"
"""Folder under the export root holding partitions between their move and the commit."""


class ForgetError(TerminalPipelineError):
    """Forgetting cannot go ahead as asked; the message says why."""


class UnknownVehicleError(ForgetError):
    """No store given knows the vehicle (a typo, or the wrong store)."""


class StoreLockedError(TransientPipelineError):
    """Another process (ingest, a flow run) holds a store's write lock."""


@dataclass(frozen=True, slots=True)
class ForgetReport:
    """What one :func:`forget_vehicle` call erased on one store.

    Attributes:
        counts: rows (or files) removed or redacted, per place; zero where nothing was left,
            so a repeated forget reports zeros.
        residual: ``table.column`` where a forgotten value still appears afterwards (should be
            empty; a new table that copies personal data shows up here).
        lead_ids: the leads whose customer block or notes were looked at (their status
            updates elsewhere, e.g. the CRM inbox, need the same treatment).
    """

    erasure_id: str
    vehicle_id: str
    customers: int
    telemetry: bool
    counts: dict[str, int] = field(default_factory=dict)
    residual: tuple[str, ...] = ()
    lead_ids: tuple[str, ...] = ()


def customers_of(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> set[str]:
    """The vehicle's owner and every customer a lead for the vehicle named."""
    rows = con.execute(
        "SELECT customer_id FROM vehicles WHERE vehicle_id = $v AND customer_id IS NOT NULL"
        " UNION SELECT json_extract_string(document, '$.customer.customer_id') FROM leads"
        " WHERE vehicle_id = $v AND json_extract_string(document, '$.customer.customer_id')"
        " IS NOT NULL", {"v": vehicle_id}).fetchall()
    return {str(r[0]) for r in rows}


def is_known(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> bool:
    """Whether the store has ever heard of the vehicle (register, leads, data, a past erasure)."""
    row = con.execute(
        "SELECT EXISTS (SELECT 1 FROM vehicles WHERE vehicle_id = $v)"
        " OR EXISTS (SELECT 1 FROM leads WHERE vehicle_id = $v)"
        " OR EXISTS (SELECT 1 FROM telemetry WHERE vehicle_id = $v)"
        " OR EXISTS (SELECT 1 FROM erasure_log WHERE vehicle_id = $v)",
        {"v": vehicle_id}).fetchone()
    return bool(row and row[0])


def personal_values(con: duckdb.DuckDBPyConnection, customer_ids: Collection[str]) -> set[str]:
    """Every id, name, e-mail and phone of these customers the store holds (table or leads)."""
    ids = sorted(customer_ids)
    values = set(ids)
    for row in con.execute("SELECT name, email, phone FROM customers"
                           " WHERE list_contains($ids, customer_id)", {"ids": ids}).fetchall():
        values.update(v for v in row if v)
    for (block,) in con.execute(
            "SELECT json_extract(document, '$.customer') FROM leads WHERE list_contains($ids,"
            " json_extract_string(document, '$.customer.customer_id'))", {"ids": ids}).fetchall():
        person = json.loads(block) if isinstance(block, str) else {}
        values.update(str(person[k]) for k in ("name", "email", "phone") if person.get(k))
    return values


def forget_vehicle(con: duckdb.DuckDBPyConnection, vehicle_id: str, *, telemetry: bool = False,
                   export_root: str | Path | None = None,
                   customer_ids: Collection[str] = (), known_values: Collection[str] = (),
                   now: dt.datetime | None = None) -> ForgetReport:
    """Erase the vehicle's customers (and with ``telemetry`` its data) on one store.

    Use a plain read-write connection (:func:`pipeline.store.connection.connect`), not the serving
    store's view-backed one. Safe to repeat: a second call erases nothing and is recorded too.

    Args:
        con: the store, opened by its one writer.
        vehicle_id: the vehicle whose customer is forgotten.
        telemetry: also delete the vehicle's measurements and derived rows.
        export_root: the Parquet export folder of this store (with ``telemetry``).
        customer_ids: further customers to forget (another store's owner of the vehicle).
        known_values: further personal values to check for afterwards (``residual``).
        now: the erasure time recorded (default: now).
    """
    ids = sorted(set(customer_ids) | customers_of(con, vehicle_id))
    needles = personal_values(con, ids) | set(known_values)
    erasure_id = f"erase-{uuid.uuid4().hex}"
    root = Path(export_root).resolve() if export_root is not None else None
    moved: list[tuple[Path, Path]] = []
    if telemetry and root is not None:
        export.recover(con, root)
        settle_trash(con, root)
        moved = _stage_partitions(root, vehicle_id, erasure_id)
    try:
        with store.transaction(con):
            counts, unlinked = _erase_customers(con, ids)
            redacted, lead_ids = _redact_leads(con, vehicle_id, ids, needles)
            counts |= redacted
            if telemetry:
                counts |= _delete_measurements(con, vehicle_id)
                counts["parquet_files"] = len(moved)
            _record(con, erasure_id, (vehicle_id, unlinked), ids, telemetry, counts, now)
    except BaseException:
        _move_back(moved)
        raise
    if root is not None and moved:
        shutil.rmtree(root / TRASH / erasure_id, ignore_errors=True)
    remaining = personal_values(con, _remaining_customers(con))
    residual = find_values(con, needles - remaining)
    return ForgetReport(erasure_id, vehicle_id, len(ids), telemetry, counts, tuple(residual),
                        tuple(lead_ids))


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> int:
    row = con.execute(sql, params).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _erase_customers(con: duckdb.DuckDBPyConnection, ids: list[str]
                     ) -> tuple[dict[str, int], list[str]]:
    unlinked = [str(r[0]) for r in con.execute(
        "UPDATE vehicles SET customer_id = NULL WHERE list_contains($ids, customer_id)"
        " RETURNING vehicle_id", {"ids": ids}).fetchall()]
    deleted = _one(con, "DELETE FROM customers WHERE list_contains($ids, customer_id)",
                   {"ids": ids})
    return {"customers": deleted, "vehicles_unlinked": len(unlinked)}, sorted(unlinked)


def _redact_leads(con: duckdb.DuckDBPyConnection, vehicle_id: str, ids: list[str],
                  needles: Collection[str]) -> tuple[dict[str, int], list[str]]:
    """Null the customer block of the leads and outbox rows that carry one of ``ids`` (or
    belong to the vehicle), then the free text around those leads."""
    where = ("list_contains($ids, json_extract_string({col}, '$.customer.customer_id'))"
             " OR {extra}")
    leads = con.execute(
        "SELECT lead_id, CAST(document AS VARCHAR) FROM leads WHERE "
        + where.format(col="document", extra="vehicle_id = $v"),
        {"ids": ids, "v": vehicle_id}).fetchall()
    lead_ids = sorted({r[0] for r in leads})
    counts = {"leads_redacted": _rewrite(con, "leads", "lead_id", "document", leads, False)}
    rows = con.execute(
        "SELECT event_id, CAST(body AS VARCHAR), status, lead_id FROM outbox WHERE "
        + where.format(col="body", extra="list_contains($leads, lead_id)"),
        {"ids": ids, "leads": lead_ids}).fetchall()
    counts["outbox_redacted"] = _rewrite(con, "outbox", "event_id", "body",
                                         [(r[0], r[1]) for r in rows], True)
    counts["outbox_pending_redacted"] = sum(
        1 for r in rows if r[2] == "pending" and _has_customer(r[1]))
    lead_ids = sorted(set(lead_ids) | {r[3] for r in rows})
    counts |= _redact_free_text(con, lead_ids, needles)
    return counts, lead_ids


def _has_customer(text: str) -> bool:
    return json.loads(text).get("customer") is not None


def _rewrite(con: duckdb.DuckDBPyConnection, table: str, key: str, column: str,
             rows: Iterable[tuple[str, str]], compact: bool) -> int:
    """Set ``customer`` to null in each row's JSON; the number of rows that had one."""
    changed = 0
    for row_id, text in rows:
        doc = json.loads(text)
        if doc.get("customer") is None:
            continue
        doc["customer"] = None
        body = json.dumps(doc, separators=(",", ":")) if compact else json.dumps(doc)
        con.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", [body, row_id])
        changed += 1
    return changed


def _redact_free_text(con: duckdb.DuckDBPyConnection, lead_ids: list[str],
                      needles: Collection[str]) -> dict[str, int]:
    events = 0
    for update_id, detail in con.execute(
            "SELECT update_id, CAST(detail AS VARCHAR) FROM lead_events"
            " WHERE list_contains($l, lead_id) AND detail IS NOT NULL", {"l": lead_ids}
    ).fetchall():
        doc = json.loads(detail)
        keys = [k for k in FREE_TEXT_KEYS if k in doc and doc[k] != ERASED]
        if keys:
            doc.update(dict.fromkeys(keys, ERASED))
            con.execute("UPDATE lead_events SET detail = ? WHERE update_id = ?",
                        [json.dumps(doc), update_id])
            events += 1
    outcomes = _one(con, "UPDATE lead_outcomes SET reason = $e WHERE list_contains($l, lead_id)"
                         " AND reason IS NOT NULL AND reason <> $e", {"e": ERASED, "l": lead_ids})
    errors = 0
    for needle in sorted(_variants(needles)):
        errors += _one(con, "UPDATE outbox SET last_error = replace(last_error, $n, $e)"
                            " WHERE list_contains($l, lead_id) AND contains(last_error, $n)",
                       {"n": needle, "e": ERASED, "l": lead_ids})
    return {"status_updates_redacted": events, "outcomes_redacted": outcomes,
            "outbox_errors_redacted": errors}


def _delete_measurements(con: duckdb.DuckDBPyConnection, vehicle_id: str) -> dict[str, int]:
    counts = {table: _one(con, f"DELETE FROM {table} WHERE vehicle_id = ?", [vehicle_id])
              for table in TELEMETRY_TABLES}
    counts["dead_letters"] = _one(
        con, "DELETE FROM dead_letters WHERE list_contains(string_split(topic, '/'), $v)"
             " OR contains(CAST(payload AS VARCHAR), CAST(encode($quoted) AS VARCHAR))",
        {"v": vehicle_id, "quoted": json.dumps(vehicle_id)})
    return counts


def _record(con: duckdb.DuckDBPyConnection, erasure_id: str,
            vehicles: tuple[str, list[str]], ids: list[str], telemetry: bool,
            counts: dict[str, int], now: dt.datetime | None) -> None:
    con.execute("INSERT INTO erasure_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                [erasure_id, now or dt.datetime.now(dt.UTC), vehicles[0], vehicles[1],
                 [customer_hash(i) for i in ids],
                 "customer+telemetry" if telemetry else "customer", json.dumps(counts)])


def _remaining_customers(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [str(r[0]) for r in con.execute("SELECT customer_id FROM customers").fetchall()]


def _variants(values: Iterable[str]) -> set[str]:
    """Each value as written, and as it appears inside JSON text (non-ASCII escaped)."""
    out: set[str] = set()
    for value in values:
        if len(value) >= 3:
            out.update({value, json.dumps(value)[1:-1]})
    return out


def find_values(con: duckdb.DuckDBPyConnection, values: Iterable[str]) -> list[str]:
    """``table.column`` of every text, JSON or binary column in which one of ``values`` occurs.

    Scans every table of the connection's own database, so a table added later is covered.
    """
    needles = sorted(_variants(values))
    if not needles:
        return []
    # A BLOB cast to VARCHAR escapes quotes and non-ASCII bytes (\x22, \xC3\xAB): look for
    # the needles escaped the same way there.
    patterns = {kind: "|".join(re.escape(n if kind != "BLOB" else _as_blob_text(con, n))
                               for n in needles) for kind in ("TEXT", "BLOB")}
    columns = con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE NOT internal"
        " AND database_name = current_database() AND schema_name = 'main'"
        " AND (data_type IN ('VARCHAR', 'JSON', 'BLOB') OR data_type LIKE 'VARCHAR[%')"
        " ORDER BY table_name, column_name").fetchall()
    return [f"{table}.{column}" for table, column, kind in columns
            if _one(con, f'SELECT count(*) FROM "{table}" WHERE regexp_matches('
                         f'CAST("{column}" AS VARCHAR), $p)',
                    {"p": patterns["BLOB" if kind == "BLOB" else "TEXT"]})]


def _as_blob_text(con: duckdb.DuckDBPyConnection, value: str) -> str:
    """``value``'s UTF-8 bytes as DuckDB writes a BLOB cast to VARCHAR."""
    row = con.execute("SELECT CAST(encode(?) AS VARCHAR)", [value]).fetchone()
    return str(row[0]) if row else value


def _stage_partitions(root: Path, vehicle_id: str, erasure_id: str) -> list[tuple[Path, Path]]:
    """Move the vehicle's exported files out of the readers' glob; (from, to) per file."""
    moved: list[tuple[Path, Path]] = []
    trash = root / TRASH / erasure_id
    for part in sorted((root / "telemetry").glob("*/vehicle_id=*")):
        if unquote(part.name.split("=", 1)[1]) != vehicle_id:
            continue
        for source in sorted(part.glob("*.parquet")):
            target = trash / source.relative_to(root / "telemetry")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
            moved.append((source, target))
        _prune(part, root / "telemetry")
    return moved


def _move_back(moved: list[tuple[Path, Path]]) -> None:
    for source, target in reversed(moved):
        source.parent.mkdir(parents=True, exist_ok=True)
        os.replace(target, source)


def _prune(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to ``stop`` while they are empty."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def settle_trash(con: duckdb.DuckDBPyConnection, root: str | Path) -> None:
    """Finish erasures a crash interrupted: delete what a recorded erasure moved aside, put
    back what an unrecorded one moved."""
    trash = Path(root).resolve() / TRASH
    if not trash.is_dir():
        return
    for folder in sorted(p for p in trash.iterdir() if p.is_dir()):
        if _one(con, "SELECT count(*) FROM erasure_log WHERE erasure_id = ?", [folder.name]):
            shutil.rmtree(folder, ignore_errors=True)
            continue
        target = Path(root).resolve() / "telemetry"
        _move_back([(target / f.relative_to(folder), f) for f in folder.rglob("*.parquet")])
        shutil.rmtree(folder, ignore_errors=True)

"""Erasure everywhere: one customer forgotten in every store and file fleetcare writes.

:func:`pipeline.privacy.forget.forget_vehicle` erases inside one DuckDB store. Around it, this
module opens every store first (so a held write lock changes nothing), gathers the customers from
all of them (the serving store keeps its own owner assignments), forgets in the landing store (with
its Parquet exports) and then in the serving store, rewrites the readers' snapshot and the CRM
inbox, and finally rewrites each store file: DuckDB keeps the bytes of deleted rows in the
file's free blocks (after ``DELETE``, ``CHECKPOINT`` and ``VACUUM`` the e-mail was still in
the file), and a copy carries live rows only.

DuckDB has one writer per file, so this runs while ingest is stopped and between flow runs,
like ``fleetcare export``; every step after the commits can be repeated by forgetting again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import duckdb

from pipeline.errors import StoreError
from pipeline.privacy.forget import (
    ERASED,
    FREE_TEXT_KEYS,
    ForgetError,
    ForgetReport,
    StoreLockedError,
    UnknownVehicleError,
    customers_of,
    forget_vehicle,
    is_known,
    personal_values,
)
from pipeline.store import connection as store
from pipeline.store import export


def compact_store(con: duckdb.DuckDBPyConnection, path: str | Path) -> None:
    """Rewrite the store's file with live rows only, then close ``con``.

    DuckDB leaves deleted values in free blocks of the file; a copy (``COPY FROM DATABASE``,
    sequences and constraints included) does not carry them. The copy replaces the file by
    rename, so a crash leaves either file whole. Only while no other process has it open.

    Raises:
        StoreError: the copy failed or a write-ahead log remained (the file is left as it was).
    """
    target = Path(path).resolve()
    fresh = target.with_name(target.name + ".compact")
    fresh.unlink(missing_ok=True)
    try:
        con.execute("CHECKPOINT")
        source = str(con.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
        con.execute(f"ATTACH '{str(fresh).replace(chr(39), chr(39) * 2)}' AS fleetcare_compact")
        try:
            con.execute(f'COPY FROM DATABASE "{source}" TO fleetcare_compact')
        finally:
            con.execute("DETACH fleetcare_compact")
    except duckdb.Error as exc:
        fresh.unlink(missing_ok=True)
        raise StoreError(f"cannot compact {target}: {exc}") from exc
    finally:
        con.close()
    if target.with_name(target.name + ".wal").exists():
        fresh.unlink(missing_ok=True)
        raise StoreError(f"{target} still has a write-ahead log; not compacted")
    with fresh.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(fresh, target)


def redact_inbox(path: str | Path, lead_ids: set[str]) -> int:
    """Replace advisors' free text of these leads' updates in the CRM inbox (JSONL); the number
    of lines changed. The file is rewritten beside itself and renamed over it, so stop
    ``fleetcare crm inbound`` first: an update appended meanwhile would be lost."""
    inbox = Path(path)
    if not inbox.is_file() or not lead_ids:
        return 0
    lines, changed = [], 0
    for line in inbox.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            doc = json.loads(line)
        except ValueError:
            lines.append(line)  # a torn line: the reader skips and counts it
            continue
        keys = [k for k in FREE_TEXT_KEYS
                if isinstance(doc, dict) and doc.get("lead_id") in lead_ids
                and k in doc and doc[k] != ERASED]
        if keys:
            doc.update(dict.fromkeys(keys, ERASED))
            line, changed = json.dumps(doc) + "\n", changed + 1
        lines.append(line)
    if changed:
        fresh = inbox.with_name(inbox.name + ".forget")
        with fresh.open("w", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(fresh, inbox)
    return changed


_WAY_OUT: Final = {
    "landing": "it is ingest's store: stop `fleetcare ingest` (SIGTERM lets it land its batch "
               "and close the file), run forget, then start ingest again",
    "serving": "a flow run (or a notebook) has it: run forget between flow runs, e.g. with "
               "the deployments paused",
}


def open_store(path: str | Path, role: str = "landing") -> duckdb.DuckDBPyConnection:
    """Open a store read-write for forget; a held write lock is reported with the way out.

    Raises:
        StoreLockedError: another process has the file open.
        StoreError: the file cannot be opened or migrated for another reason.
    """
    try:
        return store.connect(path)
    except StoreError as exc:
        if "lock" not in str(exc).lower():
            raise
        pid = re.search(r"PID (\d+)", str(exc))
        holder = f"process {pid.group(1)}" if pid else "another process"
        raise StoreLockedError(
            f"the {role} store {path} is held by {holder}; {_WAY_OUT.get(role, 'close it')}. "
            "Nothing was changed.") from exc


@dataclass(frozen=True, slots=True)
class Erasure:
    """What :func:`forget_everywhere` did: one report per store, the files it rewrote."""

    vehicle_id: str
    reports: dict[str, ForgetReport]
    snapshot: str | None = None
    inbox_lines_redacted: int = 0
    compacted: tuple[str, ...] = ()

    @property
    def residual(self) -> list[str]:
        """``store:table.column`` where a forgotten value was still found (should be empty)."""
        return [f"{role}:{place}" for role, r in self.reports.items() for place in r.residual]


def forget_everywhere(vehicle_id: str, landing: str | Path, *,
                      serving: str | Path | None = None, snapshot: str | Path | None = None,
                      export_root: str | Path | None = None, inbox: str | Path | None = None,
                      telemetry: bool = False, compact: bool = True,
                      now: dt.datetime | None = None) -> Erasure:
    """Forget the vehicle's customer in the landing store, its exports, the serving store, the
    snapshot and the CRM inbox, then rewrite each store file (``compact``) so no deleted bytes
    linger.

    Every store is opened before anything changes, so a held lock changes nothing. The
    customers are gathered from every store first: the serving store keeps its own owner
    assignments, and a store where the customer was already forgotten still learns whom to
    look for.

    Raises:
        ForgetError: a store file does not exist.
        StoreLockedError: a store is open in another process (nothing was changed).
        UnknownVehicleError: no store knows the vehicle.
    """
    paths = {"landing": Path(landing)}
    if serving is not None:
        paths["serving"] = Path(serving)
    missing = [f"{role} store {path}" for role, path in paths.items() if not path.is_file()]
    if missing:
        raise ForgetError(f"no {' and no '.join(missing)}: check the path")
    cons: dict[str, duckdb.DuckDBPyConnection] = {}
    try:
        for role, path in paths.items():
            cons[role] = open_store(path, role)
        if not any(is_known(con, vehicle_id) for con in cons.values()):
            raise UnknownVehicleError(
                f"no vehicle {vehicle_id!r} in {', '.join(str(p) for p in paths.values())}; "
                "check the id (`fleetcare leads list` shows vehicles with leads)")
        ids = set().union(*(customers_of(con, vehicle_id) for con in cons.values()))
        values = set().union(*(personal_values(con, ids) for con in cons.values()))
        reports = {role: forget_vehicle(
            con, vehicle_id, telemetry=telemetry, customer_ids=ids, known_values=values,
            export_root=export_root if role == "landing" else None, now=now)
            for role, con in cons.items()}
        written = (str(export.write_snapshot(cons["landing"], snapshot))
                   if snapshot is not None else None)
        leads = {lead for report in reports.values() for lead in report.lead_ids}
        inbox_lines = redact_inbox(inbox, leads) if inbox is not None else 0
        compacted: list[str] = []
        for role in list(cons) if compact else []:
            compact_store(cons.pop(role), paths[role])
            compacted.append(str(paths[role]))
    finally:
        for con in cons.values():
            con.close()
    return Erasure(vehicle_id, reports, written, inbox_lines, tuple(compacted))

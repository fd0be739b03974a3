"""``fleetcare forget``: no trace of the customer in any table, export, snapshot or store file.

The stores are built through the code paths that fill them in production: synthetic telemetry,
reference data, advice (leads and their outbox rows), the urgent path's critical lead, an
advisor's status update applied from the inbox, a dead letter landed by ``land``, cold
telemetry exported to Parquet, a snapshot, and a serving store synced from it. The search
afterwards enumerates every table and column through the catalogue, so a table added later is
searched too.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from synth_fleet import START, Car, add_dtc, build_store, day, register_stand_in_models

from edge.wire import contract
from flows.cli.main import main
from pipeline.crm.inbound import Inbox, StatusUpdate
from pipeline.crm.outbox import deliver_outbox
from pipeline.ingest.landing import InboundMessage, land
from pipeline.leads.advice import advise
from pipeline.leads.lifecycle import apply_inbound
from pipeline.privacy.erasure import forget_everywhere
from pipeline.privacy.forget import ERASED, StoreLockedError, UnknownVehicleError, customer_hash
from pipeline.sandbox.reference_crm import CrmReceiver
from pipeline.store import connection as store
from pipeline.store import export
from pipeline.store.serving import connect_serving
from tests.master_data import import_master_data

N_DAYS = 60
NOW = START + dt.timedelta(days=N_DAYS - 1, hours=18)
GONE, SECOND, KEEP = "ev-gone", "ev-second", "ev-keep"
PERSON = {"name": "Zoë Vergessen-Quist", "email": "zoe.vergessen@example.org",
          "phone": "+49 30 5550199"}
SECRET = "whsec_" + base64.b64encode(b"fleetcare-forget-test-key-0123").decode()


@dataclass(frozen=True)
class Fleet:
    """Paths of one test's landing store, serving store, snapshot and exports."""

    landing: Path
    serving: Path
    snapshot: Path
    exports: Path
    inbox: Path
    customer_id: str

    @property
    def needles(self) -> list[str]:
        return [self.customer_id, *PERSON.values()]


def _score_models(con: duckdb.DuckDBPyConnection) -> None:
    register_stand_in_models(con)
    for vehicle, comp in ((GONE, "brakes"), (SECOND, "lv_battery"), (KEEP, "brakes")):
        con.execute("INSERT INTO scores (vehicle_id, component, as_of, probability,"
                    " horizon_days, model_id) VALUES (?, ?, ?, 0.9, 30, ?)",
                    [vehicle, comp, day(N_DAYS - 1), f"m-{comp}"])


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> Any:
    row = con.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def _advisor_dismisses(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """The CRM reports an advisor's note that names the customer, through the inbox."""
    lead_id = _one(con, "SELECT lead_id FROM leads WHERE vehicle_id = ? AND component ="
                        " 'brakes'", [GONE])
    inbox = Inbox(path)
    inbox.append(StatusUpdate("upd-1", lead_id, "dismissed", "2025-03-01T10:00:00Z",
                              {"reason": f"{PERSON['name']} sold the car; call "
                                         f"{PERSON['phone']}"}))
    assert apply_inbound(con, inbox, now=NOW).applied == 1


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    """Landing store with three customers' vehicles (one customer owns two), leads, outbox
    rows, a dead letter, Parquet exports and a snapshot; a serving store synced from it."""
    cars = [Car(GONE, fails={"brakes": 70}), Car(SECOND), Car(KEEP, fails={"brakes": 70})]
    paths = Fleet(tmp_path / "landing.duckdb", tmp_path / "serving.duckdb",
                  tmp_path / "snapshot.duckdb", tmp_path / "exports",
                  tmp_path / "crm-inbox.jsonl", f"cust-{GONE}")
    con = build_store(paths.landing, cars, N_DAYS)
    import_master_data(con, start=day(N_DAYS - 1))
    con.execute("UPDATE customers SET name = ?, email = ?, phone = ? WHERE customer_id = ?",
                [*PERSON.values(), paths.customer_id])
    con.execute("UPDATE vehicles SET customer_id = ? WHERE vehicle_id = ?",
                [paths.customer_id, SECOND])
    _score_models(con)
    advise(con, now=NOW)
    add_dtc(con, GONE, N_DAYS - 1, "C1B02")  # brake fluid loss: the urgent path's lead
    con.execute("INSERT INTO telemetry VALUES (?, ?, 'Vehicle.Speed', 131.0, 'm-speed')",
                [GONE, NOW - dt.timedelta(hours=1)])
    advise(con, now=NOW, vehicles=[GONE], min_severity="critical", daily_features=False)
    _advisor_dismisses(con, paths.inbox)
    con.execute("UPDATE outbox SET last_error = ? WHERE event_id = (SELECT min(event_id)"
                " FROM outbox JOIN leads USING (lead_id) WHERE vehicle_id = ?)",
                [f"HTTP 422: email {PERSON['email']} bounced", SECOND])
    forged = contract.encode(contract.TelemetryBatch("m-forged", GONE, [NOW.timestamp()],
                                                     ["Vehicle.Speed"], [1.0]))
    land(con, [InboundMessage(f"fleetcare/v1/vehicles/{GONE}/telemetry", b"not json",
                              NOW.timestamp()),
               InboundMessage(contract.telemetry_topic(KEEP), forged, NOW.timestamp())])
    assert _one(con, "SELECT count(*) FROM dead_letters") == 2
    export.export_cold(con, paths.exports, older_than_days=30, now=NOW)
    export.write_snapshot(con, paths.snapshot)
    con.close()
    serving = connect_serving(paths.serving, paths.snapshot, paths.exports)
    import_master_data(serving, start=day(N_DAYS - 1))
    serving.execute("UPDATE customers SET name = ?, email = ?, phone = ? WHERE customer_id = ?",
                    [*PERSON.values(), paths.customer_id])
    _score_models(serving)
    serving.close()
    return paths


def _text_columns(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str]]:
    return con.execute(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_catalog = current_database() AND (data_type IN ('VARCHAR', 'JSON',"
        " 'BLOB') OR data_type LIKE 'VARCHAR[%') ORDER BY ALL").fetchall()


def _forms(needles: list[str]) -> list[str]:
    """Each value as written and as JSON text holds it (``ö`` escaped)."""
    return sorted({f for n in needles for f in (n, json.dumps(n)[1:-1])})


def traces_in_store(path: Path, needles: list[str]) -> list[str]:
    """``table.column`` of every text, JSON or binary column holding one of ``needles``."""
    found = []
    with duckdb.connect(str(path), read_only=True) as con:
        columns = _text_columns(con)
        assert len(columns) > 20  # the catalogue query sees the whole store
        for schema, table, column, kind in columns:
            for needle in _forms(needles):
                # a BLOB cast to VARCHAR escapes quotes and non-ASCII bytes: match it so
                text = "CAST(encode(?) AS VARCHAR)" if kind == "BLOB" else "?"
                hits = _one(con, f'SELECT count(*) FROM "{schema}"."{table}" WHERE'
                                 f' contains(CAST("{column}" AS VARCHAR), {text})', [needle])
                if hits:
                    found.append(f"{table}.{column}")
    return sorted(set(found))


def traces_in_exports(root: Path, needles: list[str]) -> list[str]:
    """Parquet files under ``root`` whose path or any value holds one of ``needles``."""
    found = []
    with duckdb.connect() as con:
        for path in sorted(root.rglob("*.parquet")):
            rows = con.execute(f"SELECT * FROM read_parquet('{path}')").fetchall()
            text = str(path) + repr(rows)
            found += [str(path) for n in _forms(needles) if n in text]
    return found


def _raw_bytes_hold(path: Path, needles: list[str]) -> bool:
    data = path.read_bytes()
    return any(n.encode() in data for n in _forms(needles))


def _other_customers(path: Path, customer_id: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT * FROM customers WHERE customer_id <> ? ORDER BY ALL",
                           [customer_id]).fetchall()


def _documents(path: Path, vehicle: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT l.document, o.body FROM leads l JOIN outbox o USING"
                           " (lead_id) WHERE l.vehicle_id = ? ORDER BY ALL", [vehicle]).fetchall()


def test_forget_leaves_no_trace_of_the_customer_in_any_table_or_export(fleet: Fleet) -> None:
    stores = (fleet.landing, fleet.serving, fleet.snapshot)
    assert all(traces_in_store(p, fleet.needles) for p in stores)  # the search finds them
    assert _raw_bytes_hold(fleet.landing, fleet.needles)
    assert _raw_bytes_hold(fleet.inbox, fleet.needles)
    others = {p: _other_customers(p, fleet.customer_id) for p in stores}
    kept_docs = {p: _documents(p, KEEP) for p in (fleet.landing, fleet.serving)}
    kept_files = sorted(fleet.exports.rglob(f"vehicle_id={KEEP}/*.parquet"))
    assert kept_files and list(fleet.exports.rglob(f"vehicle_id={GONE}/*.parquet"))

    erasure = forget_everywhere(GONE, fleet.landing, serving=fleet.serving,
                                snapshot=fleet.snapshot, export_root=fleet.exports,
                                inbox=fleet.inbox, telemetry=True, now=NOW)

    assert erasure.residual == []
    assert erasure.inbox_lines_redacted == 1 and not _raw_bytes_hold(fleet.inbox, fleet.needles)
    (update,), unreadable = Inbox(fleet.inbox).read()
    assert (update.update_id, update.detail, unreadable) == ("upd-1", {"reason": ERASED}, 0)
    for path in stores:
        assert traces_in_store(path, fleet.needles) == [], path
        assert not _raw_bytes_hold(path, fleet.needles), f"deleted bytes linger in {path}"
        assert _other_customers(path, fleet.customer_id) == others[path]
    assert traces_in_exports(fleet.exports, fleet.needles) == []
    assert list(fleet.exports.rglob(f"vehicle_id={GONE}")) == []
    assert sorted(fleet.exports.rglob(f"vehicle_id={KEEP}/*.parquet")) == kept_files
    for path in (fleet.landing, fleet.serving):
        assert _documents(path, KEEP) == kept_docs[path]
    landing = erasure.reports["landing"].counts
    assert landing["customers"] == 1 and landing["vehicles_unlinked"] == 2
    # GONE's brakes lead (escalated by the critical code: two outbox rows) and SECOND's lead
    assert (landing["leads_redacted"], landing["outbox_redacted"]) == (2, 3)
    assert landing["outbox_pending_redacted"] == 3
    assert landing["parquet_files"] > 0 and landing["dead_letters"] == 2
    assert landing["status_updates_redacted"] == landing["outcomes_redacted"] == 1
    assert landing["outbox_errors_redacted"] == 1


def test_the_vehicle_data_goes_with_telemetry_and_the_erasure_is_recorded(
        fleet: Fleet) -> None:
    forget_everywhere(GONE, fleet.landing, serving=fleet.serving, export_root=fleet.exports,
                      telemetry=True, now=NOW)
    with store.connect(fleet.landing) as con:
        for table in ("telemetry", "dtc_events", "ground_truth", "scores"):
            assert _one(con, f"SELECT count(*) FROM {table} WHERE vehicle_id = ?", [GONE]) == 0
        assert _one(con, f"SELECT count(*) FROM telemetry WHERE vehicle_id = '{KEEP}'") > 0
        log = con.execute("SELECT vehicle_id, unlinked, customer_hashes, scope FROM"
                          " erasure_log").fetchall()
        assert log == [(GONE, [GONE, SECOND], [customer_hash(fleet.customer_id)],
                        "customer+telemetry")]
        assert _one(con, "SELECT count(*) FROM vehicles WHERE customer_id IS NULL") == 2
        assert _one(con, "SELECT detail->>'reason' FROM lead_events") == ERASED
        # The DMS export still names the customer: the re-import skips them and withholds
        # the link, and counts both.
        report = import_master_data(con, start=day(N_DAYS - 1))
        assert report.tables["customers"].skipped_forgotten == 1
        assert report.tables["vehicles"].skipped_forgotten == 1
        assert _one(con, "SELECT count(*) FROM customers WHERE customer_id = ?",
                    [fleet.customer_id]) == 0
        assert _one(con, "SELECT customer_id FROM vehicles WHERE vehicle_id = ?", [GONE]) is None


def test_pending_outbox_rows_are_delivered_without_the_customer(fleet: Fleet) -> None:
    forget_everywhere(GONE, fleet.landing, now=NOW)
    with store.connect(fleet.landing) as con, CrmReceiver(SECRET) as crm:
        report = deliver_outbox(con, url=crm.url, secret=SECRET, now=NOW)
        received = crm.leads()
    assert report.delivered == len(received) > 0
    ours = [d for d in received if d["vehicle"]["vehicle_id"] in (GONE, SECOND)]
    assert ours and all(d["customer"] is None for d in ours)
    assert not any(n in json.dumps(received, ensure_ascii=False) for n in fleet.needles)
    assert any(d["customer"] for d in received if d["vehicle"]["vehicle_id"] == KEEP)


def test_forgetting_twice_is_fine_and_recorded_twice(fleet: Fleet) -> None:
    first = forget_everywhere(GONE, fleet.landing, serving=fleet.serving, now=NOW)
    second = forget_everywhere(GONE, fleet.landing, serving=fleet.serving, now=NOW)
    assert first.reports["landing"].counts["customers"] == 1
    assert set(second.reports["landing"].counts.values()) == {0}
    assert second.residual == []
    with store.connect(fleet.landing) as con:
        assert _one(con, "SELECT count(*) FROM erasure_log") == 2


def test_unknown_vehicle_is_refused_and_changes_nothing(fleet: Fleet) -> None:
    with pytest.raises(UnknownVehicleError, match="no vehicle 'nope'"):
        forget_everywhere("nope", fleet.landing, serving=fleet.serving)
    assert traces_in_store(fleet.landing, fleet.needles)


def _holder(path: Path) -> subprocess.Popen[str]:
    """Another process with the store open read-write, as ingest has it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]);"
         " print('ready', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
    return holder


def test_a_held_store_is_named_and_nothing_changes(fleet: Fleet) -> None:
    holder = _holder(fleet.landing)
    try:
        with pytest.raises(StoreLockedError, match="stop `fleetcare ingest`") as held:
            forget_everywhere(GONE, fleet.landing, serving=fleet.serving)
        assert f"process {holder.pid}" in str(held.value)
    finally:
        holder.communicate("")
    holder = _holder(fleet.serving)  # the landing store opens, the serving store does not
    try:
        with pytest.raises(StoreLockedError, match="between flow runs"):
            forget_everywhere(GONE, fleet.landing, serving=fleet.serving)
    finally:
        holder.communicate("")
    assert traces_in_store(fleet.landing, fleet.needles)
    with duckdb.connect(str(fleet.landing), read_only=True) as con:
        assert _one(con, "SELECT count(*) FROM erasure_log") == 0


def test_cli_forgets_and_reports(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["forget", GONE, "--db", str(fleet.landing), "--serving-db", str(fleet.serving),
                 "--snapshot", str(fleet.snapshot), "--exports", str(fleet.exports),
                 "--telemetry", "--yes"])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads(out)
    assert report["vehicle_id"] == GONE and report["reports"]["landing"]["customers"] == 1
    assert traces_in_store(fleet.landing, fleet.needles) == []


def test_cli_refuses_without_yes_and_names_unknown_vehicles(fleet: Fleet) -> None:
    command = [sys.executable, "-m", "flows.cli", "forget"]
    unconfirmed = subprocess.run([*command, GONE, "--db", str(fleet.landing)],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    assert traces_in_store(fleet.landing, fleet.needles)
    unknown = subprocess.run([*command, "nope", "--db", str(fleet.landing), "--yes"],
                             capture_output=True, text=True)
    assert unknown.returncode == 1
    assert "fleetcare forget: error: no vehicle 'nope'" in unknown.stderr


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in (root / "telemetry").rglob("*.parquet"))


def test_exports_come_back_when_the_erasure_does_not_commit(
        fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.privacy import forget

    before = _files(fleet.exports)

    def crash(*args: object) -> None:
        raise RuntimeError("power lost before the commit")

    with monkeypatch.context() as patched:
        patched.setattr(forget, "_record", crash)
        with pytest.raises(RuntimeError), store.connect(fleet.landing) as con:
            forget.forget_vehicle(con, GONE, telemetry=True, export_root=fleet.exports)
    assert _files(fleet.exports) == before
    assert traces_in_store(fleet.landing, fleet.needles)  # rolled back

    # A crash after the move and before the commit leaves the files aside; the next forget
    # (of any vehicle) puts them back, since no erasure of that id was recorded.
    staged = forget._stage_partitions(fleet.exports.resolve(), GONE, "erase-crashed")
    assert staged and _files(fleet.exports) != before
    with store.connect(fleet.landing) as con:
        forget.forget_vehicle(con, SECOND, telemetry=True, export_root=fleet.exports)
    assert _files(fleet.exports) == [f for f in before if f"vehicle_id={SECOND}" not in str(f)]
    assert not (fleet.exports / forget.TRASH / "erase-crashed").exists()


def test_an_urgent_lead_quotes_the_component_and_context_only(fleet: Fleet) -> None:
    with duckdb.connect(str(fleet.landing), read_only=True) as con:
        doc = json.loads(_one(con, "SELECT document FROM leads WHERE vehicle_id = ? AND"
                                   " severity = 'critical'", [GONE]))
    signals = {item["signal"] for item in doc["evidence"]["signals"]}
    assert {s for s in signals if "PadWear" in s} and "Vehicle.TraveledDistance" in signals
    assert not {s for s in signals if "Speed" in s or "TractionBattery" in s
                or "LowVoltage" in s}
    assert set(doc["customer"]) == {"customer_id", "name", "email", "phone"}

"""One CLI on a real store: the list and show commands print text a person reads, or with
``--json`` exactly one JSON document, and bad choices or swallowed arguments are refused.

The store is built the way the pipeline fills it (synthetic telemetry, master data, a promoted
model's scores, advice, a dead letter), so every command reads the rows it reads in use.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import duckdb
import orjson
import pytest
from synth_fleet import START, Car, build_store, day

from edge.wire import contract
from pipeline.cli.leads import LEAD_STATES
from pipeline.ingest.landing import InboundMessage, land
from pipeline.leads.advice import advise
from pipeline.leads.holds import HELD
from pipeline.leads.lifecycle import ORDER
from tests.e2e.replay_helpers import REPO
from tests.master_data import import_master_data
from tests.processes import cli, cli_env

NOW = START + dt.timedelta(days=29, hours=18)
VEHICLES = ("ev-a", "ev-b")
RAW = re.compile(r"[\[{(]'|'[\]})]|\bNone\b|\bTrue\b|\bFalse\b|\bb'|datetime\.|PosixPath\(")
"""What a Python repr looks like: quoted items in brackets, None/True/False, bytes, objects."""


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two EVs with brakes near failure, a promoted brakes model scoring both, their leads
    (one held: its customer withdrew consent) and one dead letter."""
    path = tmp_path_factory.mktemp("store") / "fleet.duckdb"
    cars = [Car(v, fails={"brakes": 35}) for v in VEHICLES]
    with build_store(path, cars, 30) as con:
        import_master_data(con, start=day(29))
        con.execute("UPDATE customers SET contact_consent = false WHERE customer_id = ?",
                    [f"cust-{VEHICLES[1]}"])
        con.execute("INSERT INTO model_registry (model_id, component, features, metrics,"
                    " artifact, promoted) VALUES ('m-brakes', 'brakes', [], ?,"
                    " ''::BLOB, true)",
                    [json.dumps({"threshold": 0.5, "horizon_days": 30,
                                 "held_out": {"cost": 12.0, "precision": 0.75}})])
        for vehicle in VEHICLES:
            con.execute("INSERT INTO scores (vehicle_id, component, as_of, probability,"
                        " horizon_days, model_id) VALUES (?, 'brakes', ?, 0.9, 30, 'm-brakes')",
                        [vehicle, day(29)])
        advise(con, now=NOW)
        land(con, [InboundMessage(contract.dtc_topic(VEHICLES[0]), b"not json", NOW.timestamp())])
    return path


def fleetcare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=120, check=False)


def lead_ids(db: Path) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return [r[0] for r in con.execute("SELECT lead_id FROM leads ORDER BY lead_id").fetchall()]


def commands(db: Path) -> dict[str, list[str]]:
    """Every list or show command, by id, with its arguments against ``db``."""
    store = ["--db", str(db)]
    return {
        "leads-list": ["leads", "list", *store],
        "leads-held": ["leads", "list", "--held", *store],
        "leads-show": ["leads", "show", lead_ids(db)[0], *store],
        "models-list": ["models", "list", *store],
        "models-show": ["models", "show", "m-brakes", *store],
        "deadletter-list": ["deadletter", "list", *store],
        "fleet-show": ["fleet", "show", VEHICLES[0], *store],
        "fleet-coverage": ["fleet", "coverage", *store],
        "flows-list": ["flows", "list"],
        "edge-profiles": ["edge", "profiles", "--model", "Subaru Outback"],
        "dbc-check": ["dbc", "check", str(REPO / "dbc" / "fleetcare_ref.dbc")],
    }


COMMANDS = ("leads-list", "leads-held", "leads-show", "models-list", "models-show",
            "deadletter-list", "fleet-show", "fleet-coverage", "flows-list", "edge-profiles",
            "dbc-check")


@pytest.mark.parametrize("name", COMMANDS)
def test_human_output_has_no_python_structures_and_json_is_one_document(
        db: Path, name: str) -> None:
    args = commands(db)[name]
    text = fleetcare(*args)
    assert text.returncode in (0, 1) and "Traceback" not in text.stderr, text.stderr
    assert text.stdout.strip(), text.stderr
    assert RAW.findall(text.stdout) == [], text.stdout
    as_json = fleetcare(*args, "--json")
    assert as_json.returncode == text.returncode, as_json.stderr
    assert isinstance(orjson.loads(as_json.stdout), list | dict)  # the whole stdout: one


def test_the_show_commands_text_names_the_fields_the_json_holds(db: Path) -> None:
    args = commands(db)["leads-show"]
    document = orjson.loads(fleetcare(*args, "--json").stdout)
    text = fleetcare(*args).stdout
    assert f"\nlead_id: {document['lead_id']}\n" in text
    assert f"\nvehicle:\n  vehicle_id: {document['vehicle']['vehicle_id']}\n" in text
    assert f"\nseverity: {document['severity']}\n" in text
    listed = orjson.loads(fleetcare(*commands(db)["leads-list"], "--json").stdout)
    assert sorted(lead["lead_id"] for lead in listed) == lead_ids(db)
    assert {lead["state"] for lead in listed} == {"new", HELD}


def test_a_state_that_does_not_exist_is_refused_with_the_ones_that_do(db: Path) -> None:
    done = fleetcare("leads", "list", "--state", "bogus", "--db", str(db))
    assert done.returncode == 2 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert "invalid choice: 'bogus'" in last and "'booked'" in last and "'held'" in last


def test_a_component_that_does_not_exist_is_refused_with_the_ones_that_do(db: Path) -> None:
    done = fleetcare("models", "list", "--component", "brake", "--db", str(db))
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.strip().splitlines()
    assert "--component 'brake' is not a component" in line and "brakes" in line


def test_the_state_choices_are_the_lifecycle_s() -> None:
    assert set(LEAD_STATES) == {*ORDER, HELD}


def test_fleetcare_version_is_the_installed_distribution_s() -> None:
    done = fleetcare("--version")
    assert done.returncode == 0 and done.stdout == f"fleetcare {version('fleetcare')}\n"


def test_a_dbc_before_the_log_does_not_swallow_it(tmp_path: Path) -> None:
    log = tmp_path / "two-frames.log"  # candump: a log named after --dbc must stay a log
    log.write_text("(1767225600.000000) vcan0 123#0102030405060708\n"
                   "(1767225600.010000) vcan0 124#0102\n")
    dbc = REPO / "dbc" / "fleetcare_ref.dbc"
    done = fleetcare("edge", "replay", "--dbc", str(dbc), str(log), "--check", "--taps", "")
    assert done.returncode == 0, done.stderr
    checked = orjson.loads(done.stdout.strip().splitlines()[-1])
    assert checked["logs"] == [str(log)] and checked["dbc"] == [str(dbc)]
    two = fleetcare("edge", "replay", "--dbc", str(dbc), "--dbc", str(dbc), str(log), "--check",
                    "--taps", "")
    assert orjson.loads(two.stdout.strip().splitlines()[-1])["dbc"] == [str(dbc)] * 2


def test_the_repr_check_sees_python_structures() -> None:
    for raw in ({"cost": 1.0}, ["a", "b"], ("a",), None, b"x", Path("p"), dt.date(2026, 1, 1)):
        assert RAW.search(repr(raw)), raw
    assert not RAW.search("lead-1\tev-a\tbrakes\thigh\tnew\t90 % high\t30")

"""Signal profiles read the shared real recordings into the VSS names the features use.

Each of the four real recordings (Kona and Subaru candump, the OBD-II car and the J1939 truck
as MF4) goes through a real agent with the shipped profile of its kind, and what the agent
spools must carry the VSS names with values a vehicle can have. Then the refusals: a profile
whose DBC is not on the search path, one naming a signal its DBC lacks, an unknown key, a
model no profile lists, two profiles claiming one model; each in one line from the command.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import can
import orjson
import pytest

from edge.agent import Agent
from edge.config import load_edge_settings
from edge.decode import Decoder, load_dbcs
from edge.errors import ConfigError
from edge.profiles import (
    all_profiles,
    apply_profile,
    find_profile,
    profile_for_model,
    register_entry,
)
from edge.rules import load_rules
from edge.runtime import load_taps
from edge.source import ReplaySource
from edge.spool import Spool
from edge.wire import contract
from tests.contract_subscriber import ContractSubscriber

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CAN, DBC_DIR = SHARED / "can", SHARED / "dbc"
KONA = CAN / "kona_2018" / "turnonlog.log"
SUBARU = CAN / "subaru_wrx" / "cruise.log"
OBD_CAR = CAN / "car_obd2_gnss" / "00000002-60FE415D.MF4"
TRUCK = CAN / "truck_j1939_tp" / "00000001-60B621D9.MF4"

VOLTAGE = "Vehicle.LowVoltageBattery.CurrentVoltage"
ODOMETER = "Vehicle.TraveledDistance"
SPEED = "Vehicle.Speed"
COOLANT = "Vehicle.Powertrain.CombustionEngine.ECT"
RPM = "Vehicle.Powertrain.CombustionEngine.Speed"
AMBIENT = "Vehicle.Exterior.AirTemperature"

PLAUSIBLE = {VOLTAGE: (9.0, 16.0), ODOMETER: (1.0, 2_000_000.0), SPEED: (0.0, 250.0),
             COOLANT: (-40.0, 130.0), RPM: (0.0, 8000.0), AMBIENT: (-50.0, 60.0)}
"""What a road vehicle's signals can read; a mapping or scaling error lands outside."""


def spooled(log: Path, tmp: Path, **settings: Any) -> dict[str, list[tuple[float, float]]]:
    """What a real agent spools for ``log`` with these settings: (ts, value) per signal."""
    applied = apply_profile(load_edge_settings(vehicle_id="PROFILE", interface="replay",
                                               channel=str(log), **settings))
    rules = load_rules(applied.rules)
    source = ReplaySource([log])
    spool = Spool(tmp / "spool", fsync=False)
    agent = Agent("PROFILE", source, Decoder(load_dbcs(applied.dbc, lenient_fallback=True),
                                             only_messages=rules.needed_messages()),
                  rules, spool, None, taps=load_taps(applied.taps))
    while not source.exhausted:
        frame = source.recv(timeout=0)
        if frame is not None:
            agent.process(frame)
    agent.finish()
    out: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for seq in spool.pending():
        entry = spool.read(seq)
        assert entry is not None
        message = contract.decode(entry.payload)
        if isinstance(message, contract.TelemetryBatch):
            for ts, name, value in zip(message.ts, message.signal, message.value, strict=True):
                out[name].append((ts, value))
    spool.close()
    source.shutdown()
    return out


def _plausible(samples: dict[str, list[tuple[float, float]]], names: list[str]) -> None:
    for name in names:
        assert samples.get(name), f"{name} did not come out"
        low, high = PLAUSIBLE[name]
        values = [v for _, v in samples[name]]
        assert low <= min(values) and max(values) <= high, (name, min(values), max(values))


CASES = [
    # recording, profile, the VSS names it must yield, a value a person can check
    (KONA, "hyundai_kona", [ODOMETER, COOLANT, RPM, SPEED], (ODOMETER, 60832.1)),
    (SUBARU, "subaru_wrx", [COOLANT, RPM, SPEED], (COOLANT, 80.0)),
    (OBD_CAR, "obd2_generic", [VOLTAGE, SPEED, COOLANT, RPM], None),
    (TRUCK, "j1939_generic", [COOLANT, SPEED, RPM], (COOLANT, 85.0)),
]


@pytest.mark.parametrize(("log", "profile", "names", "known"), CASES,
                         ids=[c[1] for c in CASES])
def test_a_real_recording_yields_the_vss_names_of_its_profile(
        tmp_path: Path, log: Path, profile: str, names: list[str],
        known: tuple[str, float] | None) -> None:
    samples = spooled(log, tmp_path, profile=profile, dbc_dirs=[DBC_DIR])
    _plausible(samples, names)
    if known is not None:
        name, value = known
        assert min(abs(v - value) for _, v in samples[name]) < 1.0
    if ODOMETER in samples:
        odometer = [v for _, v in sorted(samples[ODOMETER])]
        assert odometer == sorted(odometer)  # never runs backwards
    # Only VSS names and the taps' own names: the DBCs' raw signals are not collected.
    assert all(n.startswith(("Vehicle.", "OBD.", "J1939.")) for n in samples), sorted(samples)


def test_the_obd_car_reports_its_12v_voltage_from_pid_0x42(tmp_path: Path) -> None:
    samples = spooled(OBD_CAR, tmp_path, profile="obd2_generic")
    volts = [v for _, v in samples[VOLTAGE]]
    assert len(volts) == 200  # one answer to every 0x42 request in the recording
    assert 11.0 < sum(volts) / len(volts) < 15.0


def test_the_reference_profile_is_what_the_simulator_fleet_reads() -> None:
    profile = profile_for_model("aurora  ev")  # case and blanks do not matter
    assert profile.name == "fleetcare_ref"
    applied = apply_profile(load_edge_settings(vehicle_id="V", profile="fleetcare_ref"))
    assert [p.name for p in applied.dbc] == ["fleetcare_ref.dbc"]
    assert applied.rules.name == "fleetcare_ref.rules.toml" and applied.taps == []
    assert apply_profile(applied) == applied  # applied settings pick no profile any more


def test_every_shipped_profile_loads_and_claims_its_own_models() -> None:
    profiles = all_profiles()
    assert {p.name for p in profiles} >= {"hyundai_kona", "subaru_wrx", "obd2_generic",
                                          "j1939_generic", "fleetcare_ref"}
    for profile in profiles:
        for model in profile.models:
            assert profile_for_model(model).name == profile.name


def _edge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", "edge", *args], cwd=REPO,
                          capture_output=True, text=True, check=False, env=env)


def _one_line_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_profile_whose_dbc_is_not_on_the_search_path_fails_in_one_line() -> None:
    done = _edge("replay", str(KONA), "--check", "--profile", "hyundai_kona")
    _one_line_error(done, "hyundai_kona needs DBC file hyundai_kia_generic.dbc",
                    "--dbc-dir")
    found = _edge("replay", str(KONA), "--check", "--profile", "hyundai_kona",
                  "--dbc-dir", str(DBC_DIR))
    assert found.returncode == 0, found.stderr
    checked = orjson.loads(found.stdout.strip().splitlines()[-1])
    assert checked["profile"] == "hyundai_kona" and checked["taps"] == ["obd"]
    assert checked["dbc"] == [str(DBC_DIR / "hyundai_kia_generic.dbc")]


def _write_profile(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_profile_naming_a_signal_its_dbc_lacks_fails_at_load_in_one_line(
        tmp_path: Path) -> None:
    _write_profile(tmp_path / "p", "typo", 'models = ["Typo Car"]\n'
                   'dbc = ["hyundai_kia_generic.dbc"]\n'
                   '[[signal]]\ndbc = "CLU12.CF_Clu_Odometr"\nvss = "Vehicle.TraveledDistance"\n')
    done = _edge("replay", str(KONA), "--check", "--profile", "typo", "--profile-dir",
                 str(tmp_path / "p"), "--dbc-dir", str(DBC_DIR))
    _one_line_error(done, "signal profile typo", "CLU12.CF_Clu_Odometr",
                    "hyundai_kia_generic.dbc does not define")


def test_an_unknown_key_or_rules_twice_fail_at_load(tmp_path: Path) -> None:
    bad = _write_profile(tmp_path, "bad", 'models = ["X"]\ndbcs = ["a.dbc"]\n')
    with pytest.raises(ConfigError, match="unknown key dbcs"):
        find_profile(str(bad))
    both = _write_profile(tmp_path, "both", 'rules = "fleetcare_ref.rules.toml"\n'
                          '[[signal]]\ndbc = "A.B"\nvss = "Vehicle.Speed"\n')
    with pytest.raises(ConfigError, match="inline or as rules"):
        find_profile(str(both))


def test_a_profile_beside_dbc_or_rules_is_refused() -> None:
    done = _edge("replay", str(KONA), "--check", "--profile", "obd2_generic", "--rules",
                 str(REPO / "dbc" / "fleetcare_ref.rules.toml"))
    _one_line_error(done, "obd2_generic sets the DBC files and rules", "drop rules")


def _register(tmp_path: Path, rows: str) -> Path:
    path = tmp_path / "vehicles.csv"
    path.write_text("vehicle_id,vin,model,model_year,region,centre_id,customer_id\n" + rows,
                    encoding="utf-8")
    return path


def test_the_registers_model_picks_the_profile_and_an_unlisted_model_is_one_line(
        tmp_path: Path) -> None:
    register = _register(tmp_path, "KONA-1,,Hyundai Kona,2018,north,C1,K1\n"
                                   "ZOE-1,,Renault Zoe,2020,north,C1,K2\n")
    assert register_entry(register, "KONA-1") == ("Hyundai Kona", None)
    done = _edge("replay", str(KONA), "--check", "--register", str(register), "--vehicle",
                 "KONA-1", "--dbc-dir", str(DBC_DIR))
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout.strip().splitlines()[-1])["profile"] == "hyundai_kona"
    _one_line_error(_edge("replay", str(KONA), "--check", "--register", str(register),
                          "--vehicle", "ZOE-1"),
                    "no signal profile lists vehicle model 'Renault Zoe'", "--profile-dir")
    _one_line_error(_edge("replay", str(KONA), "--check", "--register", str(register),
                          "--vehicle", "NOPE"), "does not list vehicle NOPE")


def test_a_profile_column_in_the_register_wins_over_the_model(tmp_path: Path) -> None:
    path = tmp_path / "vehicles.csv"
    path.write_text("vehicle_id,model,profile\nCAR-1,Renault Zoe,obd2_generic\n",
                    encoding="utf-8")
    assert register_entry(path, "CAR-1") == ("Renault Zoe", "obd2_generic")
    done = _edge("replay", str(OBD_CAR), "--check", "--register", str(path), "--vehicle",
                 "CAR-1")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout.strip().splitlines()[-1])["profile"] == "obd2_generic"


def test_a_users_folder_comes_first_and_two_claims_in_one_folder_are_refused(
        tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    _write_profile(mine, "my_obd", 'models = ["Hyundai Kona"]\ntaps = ["obd"]\n')
    assert profile_for_model("Hyundai Kona", [mine]).name == "my_obd"
    _write_profile(mine, "my_other", 'models = ["hyundai kona"]\n')
    with pytest.raises(ConfigError, match=r"listed by more than one profile.*my_obd, my_other"):
        profile_for_model("Hyundai Kona", [mine])


@pytest.mark.broker
def test_edge_run_reads_a_bus_with_the_registers_profile(broker_url: str,
                                                         tmp_path: Path) -> None:
    vehicle = f"RUN-{uuid.uuid4().hex[:6]}"
    register = _register(tmp_path, f"{vehicle},,Subaru WRX,2016,north,C1,K1\n")
    subscriber = ContractSubscriber(broker_url, contract.telemetry_topic(vehicle))
    env = dict(os.environ, FLEETCARE_EDGE__SPOOL_DIR=str(tmp_path / "spool"),
               FLEETCARE_EDGE__RECEIPTS="false")
    try:
        done = _edge("run", "--vehicle", vehicle, "--interface", "replay", "--channel",
                     str(SUBARU), "--broker", broker_url, "--register", str(register),
                     "--dbc-dir", str(DBC_DIR), env=env)
        assert done.returncode == 0, done.stderr
        summary = orjson.loads(done.stdout.strip().splitlines()[-1])
        assert summary["drained"] is True and summary["frames_read"] == 6106
        assert subscriber.wait_for(lambda: sum(
            len(m.ts) for m in subscriber.messages if isinstance(m, contract.TelemetryBatch)
        ) >= summary["signals_spooled"])
    finally:
        subscriber.close()
    names = {n for m in subscriber.messages if isinstance(m, contract.TelemetryBatch)
             for n in m.signal}
    assert {SPEED, RPM, COOLANT} <= names
    assert all(n.startswith(("Vehicle.", "OBD.")) for n in names), sorted(names)


def test_start_at_restamps_a_recording_keeping_every_interval(tmp_path: Path) -> None:
    recorded = [m.timestamp for m in _frames(ReplaySource([SUBARU]))]
    start = 1_780_000_000.0
    by_frame = [m.timestamp for m in _frames(ReplaySource([SUBARU], start_at=start))]
    raw_source = ReplaySource([SUBARU], start_at=start)
    raw: list[float] = []
    while batch := raw_source.recv_raw(0):
        raw += [ts for ts, _, _ in batch]
    assert by_frame[0] == start and len(by_frame) == len(recorded) == len(raw)
    assert by_frame == pytest.approx([t - recorded[0] + start for t in recorded], abs=1e-6)
    assert raw == pytest.approx(by_frame, abs=1e-6)
    resumed = ReplaySource([SUBARU], start_at=start)
    resumed.skip(1000)  # a resumed replay keeps the first run's offset
    assert next(iter(_frames(resumed))).timestamp == pytest.approx(by_frame[1000], abs=1e-6)


def _frames(source: ReplaySource) -> list[can.Message]:
    frames = []
    while not source.exhausted:
        frame = source.recv(timeout=0)
        if frame is not None:
            frames.append(frame)
    source.shutdown()
    return frames


def test_fleetcare_replay_hands_the_profile_options_to_the_agent(tmp_path: Path) -> None:
    db = tmp_path / "fleet.duckdb"
    done = subprocess.run([sys.executable, "-m", "flows.cli", "replay", str(KONA), "--db",
                           str(db), "--profile", "hyundai_kona", "--profile-dir",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "hyundai_kona needs DBC file hyundai_kia_generic.dbc" in done.stderr
    assert not db.exists()  # refused before any broker or store


def test_edge_profiles_checks_every_profile_and_shows_the_one_a_model_gets(
        tmp_path: Path) -> None:
    found = _edge("profiles", "--dbc-dir", str(DBC_DIR), "--json")
    assert found.returncode == 0, found.stderr
    reports = {r["name"]: r for r in orjson.loads(found.stdout)}
    assert {"hyundai_kona", "subaru_wrx", "obd2_generic", "j1939_generic",
            "fleetcare_ref"} <= reports.keys()
    assert not any(r["error"] for r in reports.values())
    assert reports["subaru_wrx"]["dbc"] == [str(DBC_DIR / "subaru_outback_2015_generated.dbc")]
    missing = _edge("profiles")  # the opendbc files are not shipped: those two fail
    assert missing.returncode == 1
    failing = [line for line in missing.stdout.splitlines() if line.startswith("fails")]
    assert [line.split()[1] for line in failing] == ["hyundai_kona:", "subaru_wrx:"]
    assert all("give its folder with --dbc-dir" in line for line in failing)
    mine = tmp_path / "mine"
    _write_profile(mine, "typo", 'models = ["Typo Car"]\ndbc = ["fleetcare_j1939.dbc"]\n'
                   '[[signal]]\ndbc = "VEP1.BatteryPotential"\nvss = "Vehicle.Speed"\n')
    typo = _edge("profiles", "--profile-dir", str(mine), "--model", "typo car")
    assert typo.returncode == 1 and typo.stdout.startswith("fails typo:")
    assert "VEP1.BatteryPotential" in typo.stdout
    outback = _edge("profiles", "--model", "Subaru Outback", "--dbc-dir", str(DBC_DIR))
    assert outback.returncode == 0 and outback.stdout.startswith("ok    subaru_wrx:")
    _one_line_error(_edge("profiles", "--model", "Renault Zoe"),
                    "no signal profile lists vehicle model 'Renault Zoe'")

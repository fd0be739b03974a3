"""The wheel works where there is no checkout: a gateway's ``pip install fleetcare``.

One wheel is built from a copy of the checkout (so the build writes nothing into the shared
tree and cannot pick up a half-saved file) and installed into a fresh venv with the gateway's
dependencies only (no backend extra), pinned by requirements.lock. The installed ``fleetcare``
then runs from an empty folder, so nothing of the source tree can be imported: the reference
DBC, the collection rules and the UDS maps must come out of the wheel itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cantools
import orjson
import pytest
from cantools.database.can import Database

from edge.sim.simulator import dtc_code_to_raw
from edge.wire import contract
from pipeline.ingest.service import Ingestor
from tests.contract_subscriber import ContractSubscriber

pytestmark = pytest.mark.slow

SOURCE = Path(__file__).resolve().parents[2]
DATA = SOURCE / "dbc"
"""The reference data as data engineers keep it; the wheel must carry these very bytes."""
PACKAGED = "edge/reference_data"
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    ".prefect", "demo-output", "*.duckdb", "*.duckdb.wal", "docs",
)
"""What a build never needs: caches, environments, outputs (tests/ is copied on purpose)."""


@dataclass(frozen=True)
class Installed:
    """A wheel, the venv it is installed in, and an empty folder to run commands from."""

    wheel: Path
    venv: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """One installed command, with no PYTHONPATH and nothing of ours in its environment."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "FLEETCARE_", "VIRTUAL_ENV"))}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(args, cwd=self.workdir, env=env, capture_output=True, text=True,
                              check=False)


def _checked(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    shutil.copytree(SOURCE, root / "src", ignore=_NOT_COPIED)
    _checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
              str(root / "dist"), str(root / "src")])
    wheel, = (root / "dist").glob("fleetcare-*.whl")
    venv.EnvBuilder(with_pip=False).create(root / "venv")
    # This venv's own pip installs into the new one (--python): the new venv needs no pip.
    _checked([sys.executable, "-m", "pip", "--python", str(root / "venv" / "bin" / "python"),
              "install", "-q", "-c", str(SOURCE / "requirements.lock"), str(wheel)])
    workdir = root / "work"
    workdir.mkdir()
    yield Installed(wheel, root / "venv", workdir)


def test_the_wheel_carries_the_reference_data_and_every_package_but_no_tests(
        installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        data = sorted(p for p in DATA.rglob("*") if p.is_file() and p.suffix != ".py"
                      and "__pycache__" not in p.parts)
        assert {p.name for p in data} >= {"fleetcare_ref.dbc", "fleetcare_ref.rules.toml",
                                          "fleetcare_ref.toml", "nissan_leaf.toml"}
        for path in data:
            packaged = f"{PACKAGED}/{path.relative_to(DATA).as_posix()}"
            assert wheel.read(packaged) == path.read_bytes(), packaged
    assert not [n for n in names if n.startswith("tests/")]
    # pyproject.toml lists its packages (edge.reference_data cannot be found by searching),
    # so a new sub-package left off that list would be missing from the wheel.
    packages = sorted(p.relative_to(SOURCE).as_posix()
                      for top in ("edge", "pipeline", "models", "flows")
                      for p in (SOURCE / top).rglob("__init__.py"))
    assert [p for p in packages if p not in names] == []


def test_the_installed_edge_reads_its_own_copy_of_the_data(installed: Installed) -> None:
    done = installed.run(str(installed.python), "-c",
                         "import sys, edge, edge.reference as r; print(edge.__file__); "
                         "print(r.reference_dbc()); print(r.reference_rules()); "
                         "print(*r.uds_map_paths(), sep='\\n'); print(*sys.path, sep='\\n')")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    site = Path(lines[0]).parents[1]
    assert site.is_relative_to(installed.venv)
    assert lines[1:5] == [str(site / PACKAGED / name) for name in (
        "fleetcare_ref.dbc", "fleetcare_ref.rules.toml", "uds/fleetcare_ref.toml",
        "uds/nissan_leaf.toml")]
    assert not [p for p in lines[5:] if p and Path(p).is_relative_to(SOURCE)]


def test_the_installed_edge_resolves_its_shipped_signal_profiles(installed: Installed) -> None:
    done = installed.run(str(installed.python), "-c",
                         "import edge.profiles as p; r = p.resolve(p.find_profile("
                         "'j1939_generic')); print(r.profile.path); print(*r.dbc); "
                         "print(p.profile_for_model('Aurora EV').rules)")
    assert done.returncode == 0, done.stderr
    profile, dbc, rules = (Path(line) for line in done.stdout.splitlines())
    site = installed.venv / "lib"
    assert all(path.is_relative_to(site) for path in (profile, dbc, rules))
    assert profile.as_posix().endswith(f"{PACKAGED}/profiles/j1939_generic.toml")
    assert dbc.name == "fleetcare_j1939.dbc" and rules.name == "fleetcare_ref.rules.toml"


def test_installed_dbc_check_passes_the_packaged_dbc(installed: Installed) -> None:
    packaged = _packaged_dbc(installed)
    done = installed.run("fleetcare", "dbc", "check", str(packaged))
    db = _reference_db()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"ok      {packaged}: {len(db.messages)} messages, "
        f"{sum(len(m.signals) for m in db.messages)} signals"]
    assert done.stderr.strip().splitlines()[-1] == "1 files: 1 load, 0 fail"


UDS_SOC_ANSWER = "0562010213880000"
"""An ISO-TP single frame on 0x74C: the reference BMS answers DID 0x0102, charge 50.00 %."""


@pytest.mark.broker
def test_installed_edge_replay_publishes_with_the_packaged_rules_and_maps(
        installed: Installed, mosquitto_url: str, tmp_path: Path, db_path: Path) -> None:
    speeds = [10.0, 42.5, 88.25]
    log = _reference_log(tmp_path / "ref.log", speeds)
    vehicle = f"WHEEL-{uuid.uuid4().hex[:8]}"
    subscriber = ContractSubscriber(mosquitto_url, f"{contract.TOPIC_ROOT}/vehicles/{vehicle}/+")
    # The installed agent drains its spool on the store's receipts, so a backend listens too.
    ingestor = Ingestor(mosquitto_url, db_path, client_id=f"ingest-{vehicle}",
                        require_registered_vehicles=False, rate_limit=None,
                        flush_interval_s=0.05).start()
    try:
        # No --rules: the default is the packaged rules. The uds tap reads the packaged maps.
        done = installed.run("fleetcare", "edge", "replay", str(log), "--dbc",
                             str(_packaged_dbc(installed)), "--broker", mosquitto_url,
                             "--vehicle", vehicle, "--taps", "obd,j1939,uds")
        assert done.returncode == 0, done.stderr
        summary = orjson.loads(done.stdout.strip().splitlines()[-1])
        assert summary["frames_read"] == len(speeds) + 3
        assert summary["frames_decoded"] == len(speeds) + 2
        assert summary["unknown_frames"] == 1  # the UDS answer: no DBC message, the tap's
        assert summary["dtc_events"] == 1 and summary["drained"] is True
        assert subscriber.wait_for(lambda: subscriber.signals() >= summary["signals_spooled"]
                                   and any(isinstance(m, contract.DtcBatch)
                                           for m in subscriber.messages))
    finally:
        subscriber.close()
        ingestor.stop()
    samples = sorted((ts, name, value) for m in subscriber.messages
                     if isinstance(m, contract.TelemetryBatch)
                     for ts, name, value in zip(m.ts, m.signal, m.value, strict=True))
    assert len(samples) == summary["signals_spooled"]
    by_name: dict[str, list[float]] = {}
    for _, name, value in samples:
        by_name.setdefault(name, []).append(value)
    # Names from the rules (VSS paths), not the DBC's raw "<Message>.<Signal>".
    assert by_name == {
        "Vehicle.Speed": pytest.approx(speeds),
        "Vehicle.TraveledDistance": pytest.approx([12345.6] * len(speeds)),
        "Vehicle.Exterior.AirTemperature": pytest.approx([21.5]),
        "Vehicle.Powertrain.TractionBattery.StateOfCharge.Current": pytest.approx([50.0]),
    }
    events = [e for m in subscriber.messages if isinstance(m, contract.DtcBatch)
              for e in m.events]
    assert [(e.code, e.status, e.ecu, e.source) for e in events] == [
        ("P0A80", "stored", "0x44", "can")]


def _packaged_dbc(installed: Installed) -> Path:
    """The reference DBC inside the venv, as the installed accessor names it."""
    done = installed.run(str(installed.python), "-c",
                         "from edge.reference import reference_dbc; print(reference_dbc())")
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip())
    assert path.is_relative_to(installed.venv) and path.is_file()
    return path


def _reference_db() -> Database:
    db = cantools.database.load_file(DATA / "fleetcare_ref.dbc", strict=True)
    assert isinstance(db, Database)
    return db


def _reference_log(path: Path, speeds: list[float]) -> Path:
    """A candump log of the reference bus: motion frames, an ambient one, a fault code, and
    a UDS answer only the ``uds`` tap understands."""
    db = _reference_db()
    motion, ambient = db.get_message_by_name("VCU_Motion"), db.get_message_by_name("BCM_Ambient")
    dtc = db.get_message_by_name("DIAG_DtcReport")
    frames = [(motion.frame_id, motion.encode({"VehicleSpeed": s, "Odometer": 12345.6}))
              for s in speeds]
    frames.append((ambient.frame_id, ambient.encode({"AmbientTemperature": 21.5})))
    frames.append((dtc.frame_id, dtc.encode({"DtcCode": dtc_code_to_raw("P0A80"),
                                             "DtcStatus": 1, "EcuAddress": 0x44,
                                             "DtcCount": 1})))
    frames.append((0x74C, bytes.fromhex(UDS_SOC_ANSWER)))
    path.write_text("".join(f"({1_767_225_600 + i * 0.01:.6f}) can0 {ident:03X}#"
                            f"{data.hex().upper()}\n" for i, (ident, data) in enumerate(frames)),
                    encoding="ascii")
    return path

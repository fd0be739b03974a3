"""The generated broker configurations: limits derived from the contract and the design load,
printed with their derivation; the user mosquitto runs as; refusals before anything is written.

Running mosquitto on these files is the job of tests/pipeline/test_broker_durability.py and
tests/pipeline/test_broker_identity.py; this file reads what the generators wrote.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pwd
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config import EdgeSettings
from edge.wire import contract
from pipeline.broker import limits as lim
from pipeline.broker import pki
from pipeline.broker.account import BROKER_ACCOUNT, account, unreachable
from pipeline.broker.acl import acl_text, write_broker_config
from pipeline.broker.harness import free_port, mosquitto_config

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0 or account(BROKER_ACCOUNT) is None,
                               reason="hands files to the mosquitto account: needs root and it")


def settings_of(conf: str) -> dict[str, list[str]]:
    """mosquitto.conf as {setting: [values]}, comments left out."""
    found: dict[str, list[str]] = {}
    for line in conf.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user may enter (pytest's tmp_path sits in a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="fleetcare-conf-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)


def test_the_design_rates_are_the_agents_defaults() -> None:
    edge = {name: field.default for name, field in EdgeSettings.model_fields.items()}
    assert 1 / edge["batch_interval_s"] == lim.TELEMETRY_MESSAGES_PER_VEHICLE_S
    assert 1 / edge["health_interval_s"] == lim.HEALTH_MESSAGES_PER_VEHICLE_S
    assert edge["batch_signals"] > lim.SAMPLES_PER_VEHICLE_S  # so one message a second


def test_the_queue_holds_the_design_fleets_outage_and_sizes_follow_the_contract() -> None:
    limits = lim.DEFAULT_LIMITS
    per_vehicle = lim.TELEMETRY_MESSAGES_PER_VEHICLE_S + lim.HEALTH_MESSAGES_PER_VEHICLE_S
    assert limits.max_queued_messages == math.ceil(
        lim.DESIGN_VEHICLES * per_vehicle * lim.INGEST_OUTAGE_S) == 366_000
    assert limits.max_queued_bytes == 1_658_100_000 <= lim.MOSQUITTO_INT_MAX
    assert limits.message_size_limit == contract.MAX_PAYLOAD_BYTES
    small = lim.derive_limits(vehicles=10, outage_s=60)
    assert (small.max_queued_messages, small.vehicles, small.outage_s) == (610, 10, 60)


def test_saving_a_full_queue_takes_at_most_a_tenth_of_the_brokers_time() -> None:
    # mosquitto rewrites everything at each save, in its one thread: a save once a second of
    # a deep queue left a restarted 2,000-vehicle broker unable to accept connections.
    for limits in (lim.DEFAULT_LIMITS, lim.derive_limits(vehicles=200),
                   lim.derive_limits(vehicles=10, outage_s=60)):
        save_s = limits.max_queued_bytes / lim.SAVE_BYTES_PER_S
        assert limits.persistence
        assert save_s <= lim.SAVE_SHARE * limits.autosave_interval_s
        assert limits.autosave_interval_s == 1 or save_s > lim.SAVE_SHARE * (
            limits.autosave_interval_s - 1)  # and no longer than that needs
    assert lim.DEFAULT_LIMITS.autosave_interval_s == 62
    assert lim.derive_limits(vehicles=10, outage_s=60).autosave_interval_s == 1


@pytest.mark.parametrize(("overrides", "message"), [
    ({"vehicles": 20_000}, "more than mosquitto can read"),
    ({"outage_s": 0}, "outage_s must be a positive number"),
    ({"vehicles": math.nan}, "vehicles must be a positive number"),
])
def test_limits_mosquitto_cannot_hold_are_refused(overrides: dict[str, float],
                                                  message: str) -> None:
    # mosquitto 2.0.11 reads limits as C ints: 2**32 + 1000 acted as 1,000 (measured).
    with pytest.raises(ValueError, match=message):
        lim.derive_limits(**overrides)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="autosave_interval_s must be > 0"):
        dataclasses.replace(lim.DEFAULT_LIMITS, autosave_interval_s=0)


def test_the_one_machine_broker_config_states_and_sets_every_limit(tmp_path: Path) -> None:
    text = mosquitto_config(1883, tmp_path, "mosquitto")
    conf = settings_of(text)
    assert conf["persistence"] == ["true"] and conf["autosave_interval"] == ["62"]
    assert conf["autosave_on_changes"] == ["false"]
    assert conf["persistence_location"] == [f"{tmp_path}/"]
    assert conf["max_queued_messages"] == ["366000"]
    assert conf["max_queued_bytes"] == ["1658100000"]
    assert conf["message_size_limit"] == [str(contract.MAX_PAYLOAD_BYTES)]
    assert conf["max_inflight_messages"] == ["10000"] and conf["sys_interval"] == ["10"]
    assert conf["user"] == ["mosquitto"] and conf["listener"] == ["1883 127.0.0.1"]
    # The comments carry the derivation with the chosen numbers.
    assert "# Queue: 2,000 vehicles x 1.0167 messages/s x 180 s of ingest outage (3 min) = " \
           "366,000 messages;" in text
    assert "1,658,100,000 B (1.54 GiB of memory when full)" in text
    off = settings_of(mosquitto_config(1883, tmp_path, "mosquitto",
                                       dataclasses.replace(lim.DEFAULT_LIMITS,
                                                           persistence=False)))
    assert off["persistence"] == ["false"] and "autosave_interval" not in off


def test_the_tls_config_binds_client_ids_to_certificates_and_persists(open_dir: Path) -> None:
    pki.init_ca(open_dir / "ca")
    pki.issue(open_dir / "ca", "broker", server_hosts=("127.0.0.1",))
    me = pwd.getpwuid(os.geteuid()).pw_name
    conf_path = write_broker_config(open_dir / "ca", open_dir / "out", port=8884, run_as=me)
    conf = settings_of(conf_path.read_text())
    assert conf["use_identity_as_username"] == ["true"]
    assert conf["use_username_as_clientid"] == ["true"]
    assert conf["require_certificate"] == ["true"] and conf["user"] == [me]
    assert conf["persistence_location"] == [f"{open_dir / 'out' / 'data'}/"]
    assert conf["keyfile"] == [str(open_dir / "ca" / "broker.key")]  # absolute
    assert conf["max_queued_messages"] == ["366000"] and conf["autosave_interval"] == ["62"]
    assert (open_dir / "out" / "data").is_dir()


def test_monitors_read_only_the_brokers_counters() -> None:
    text = acl_text(("fleetcare-ingest",), ("fleetcare-monitor",))
    assert text.endswith("\nuser fleetcare-monitor\ntopic read $SYS/broker/#\n")
    monitor = text.split("user fleetcare-monitor\n")[1]
    assert "fleetcare/v1" not in monitor  # no vehicle data for the health check's login


def test_broker_config_refuses_missing_broker_files_and_unknown_users(tmp_path: Path) -> None:
    pki.init_ca(tmp_path / "ca")
    with pytest.raises(pki.PkiError, match=r"has no broker\.pem, broker\.key: run "):
        write_broker_config(tmp_path / "ca", tmp_path / "out")
    pki.issue(tmp_path / "ca", "broker", server_hosts=("127.0.0.1",))
    with pytest.raises(pki.PkiError, match="user 'no-such-user' does not exist"):
        write_broker_config(tmp_path / "ca", tmp_path / "out", run_as="no-such-user")
    assert not (tmp_path / "out").exists()  # nothing written


@ROOT_ONLY
def test_as_root_the_key_and_data_are_handed_to_the_mosquitto_account(open_dir: Path) -> None:
    pki.init_ca(open_dir / "ca")
    pki.issue(open_dir / "ca", "broker", server_hosts=("127.0.0.1",))
    broker = account(BROKER_ACCOUNT)
    assert broker is not None
    key = open_dir / "ca" / "broker.key"
    assert unreachable(key, broker) is not None  # root's 0600 key: mosquitto could not read it

    done = subprocess.run([sys.executable, "-m", "flows.cli", "pki", "broker-config",
                           str(open_dir / "ca"), "--out", str(open_dir / "out")],
                          capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    assert settings_of((open_dir / "out" / "mosquitto.conf").read_text())["user"] == [
        BROKER_ACCOUNT]
    info = key.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (broker.uid, 0o600)
    assert (open_dir / "out" / "data").stat().st_uid == broker.uid
    assert unreachable(key, broker) is None
    assert unreachable(open_dir / "out" / "data", broker, write=True) is None
    ca_key = open_dir / "ca" / "ca.key"
    assert ca_key.stat().st_uid == 0 and unreachable(ca_key, broker) is not None  # kept away


@ROOT_ONLY
def test_as_root_a_pki_the_broker_user_cannot_reach_is_refused_untouched(
        tmp_path: Path) -> None:
    # tmp_path sits in a 0700 directory: the mosquitto account may not enter it.
    pki.init_ca(tmp_path / "ca")
    pki.issue(tmp_path / "ca", "broker", server_hosts=("127.0.0.1",))

    done = subprocess.run([sys.executable, "-m", "flows.cli", "pki", "broker-config",
                           str(tmp_path / "ca"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert "mosquitto would run as mosquitto and could not open what it needs: " \
           "mosquitto may not enter" in line and "(--user)" in line
    assert (tmp_path / "ca" / "broker.key").stat().st_uid == 0  # not handed over
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("size", "expected"), [("10", {"max_queued_messages": ["1830"],
                                                        "autosave_interval": ["1"]}),
                                               ("2000", {"max_queued_messages": ["366000"],
                                                         "autosave_interval": ["62"]})])
def test_both_configurations_are_sized_for_the_fleet_given(
        open_dir: Path, size: str, expected: dict[str, list[str]]) -> None:
    pki.init_ca(open_dir / "ca")
    pki.issue(open_dir / "ca", "broker", server_hosts=("127.0.0.1",))
    done = subprocess.run([sys.executable, "-m", "flows.cli", "pki", "broker-config",
                           str(open_dir / "ca"), "--out", str(open_dir / "out"),
                           "--fleet-size", size],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    conf = settings_of((open_dir / "out" / "mosquitto.conf").read_text())
    assert {key: conf[key] for key in expected} == expected


@pytest.mark.parametrize(("size", "says"), [
    ("0", "'0' is not a positive whole number of vehicles"),
    ("many", "'many' is not a positive whole number of vehicles"),
    ("20000", "more than mosquitto can read"),
])
def test_a_fleet_size_the_broker_cannot_serve_is_refused_in_one_line(size: str,
                                                                     says: str) -> None:
    done = subprocess.run([sys.executable, "-m", "flows.cli", "broker", "--port",
                           str(free_port()), "--fleet-size", size],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert says in done.stderr.strip().splitlines()[-1]

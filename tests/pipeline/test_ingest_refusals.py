"""The ingest side's commands refuse bad input at start: one line, a non-zero exit, and no
store file left behind by a command that failed before it wrote anything.

Each case runs the real ``fleetcare`` command in its own process.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.wire import contract
from pipeline.broker.harness import find_mosquitto, free_port
from pipeline.ingest.landing import InboundMessage, land
from pipeline.store import connection as store


def fleetcare(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The failed command's only line on stderr (nothing on stdout)."""
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and done.stdout == "", done.stderr
    return lines[0]


@pytest.fixture
def nobody() -> str:
    """A broker URL nothing listens on."""
    return f"mqtt://127.0.0.1:{free_port()}"


@pytest.mark.parametrize(("flags", "said"), [
    (["--flush-rows", "0"], "--flush-rows must be a positive number, not 0"),
    (["--flush-bytes", "0"], "--flush-bytes must be a positive number, not 0"),
    (["--rate-limit", "nan"], "--rate-limit must be 0 or a positive number, not nan"),
    (["--rate-limit", "-5"], "--rate-limit must be 0 or a positive number, not -5.0"),
], ids=["flush-rows", "flush-bytes", "rate-limit-nan", "rate-limit-negative"])
def test_ingest_refuses_a_bad_number_before_it_opens_anything(
        db_path: Path, nobody: str, flags: list[str], said: str) -> None:
    done = fleetcare("ingest", "--no-urgent", "--broker", nobody, "--db", str(db_path), *flags)

    assert one_line(done) == f"fleetcare ingest: error: {said}"
    assert not db_path.exists()


def test_ingest_with_an_unreachable_broker_leaves_no_new_store(db_path: Path,
                                                                nobody: str) -> None:
    done = fleetcare("ingest", "--no-urgent", "--broker", nobody, "--db", str(db_path))

    assert f"cannot connect to the broker at {nobody}" in one_line(done)
    assert list(db_path.parent.iterdir()) == []  # neither the file nor a .wal


def test_ingest_with_an_unreachable_broker_keeps_an_existing_store(db_path: Path,
                                                                   nobody: str) -> None:
    with store.connect(db_path) as con:
        land(con, [InboundMessage(contract.dtc_topic("VIN1"), b"not json", 0.0)])

    done = fleetcare("ingest", "--no-urgent", "--broker", nobody, "--db", str(db_path))

    assert "cannot connect to the broker" in one_line(done)
    with store.connect_readonly(db_path) as con:
        assert con.execute("SELECT count(*) FROM dead_letters").fetchone() == (1,)


@pytest.mark.parametrize("command", [["deadletter", "list"], ["deadletter", "replay"],
                                     ["export", "--dir", "parquet"]],
                         ids=["deadletter-list", "deadletter-replay", "export"])
def test_store_commands_on_a_missing_store_create_none(db_path: Path,
                                                       command: list[str]) -> None:
    done = fleetcare(*command, "--db", str(db_path))

    assert f"error: no store at {db_path}" in one_line(done)
    assert not db_path.exists()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def test_the_broker_on_a_busy_port_fails_in_one_line(busy_port: int, tmp_path: Path) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    # Before the check, mosquitto exited at once while the readiness probe reached the other
    # program: the command said it had started, and stayed up without a broker.
    done = fleetcare("broker", "--port", str(busy_port), "--broker-kind", "mosquitto",
                     "--data-dir", str(tmp_path / "mq"))

    assert one_line(done).startswith(
        f"fleetcare broker: error: cannot listen on 127.0.0.1:{busy_port}: Address already in use")

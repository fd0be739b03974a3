"""Progress bars on terminals, silence in pipes: the helper and the commands that draw it
(``sim run``, ``edge replay``, ``fleet import``), under a real pseudo-terminal and a real pipe."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import threading
from pathlib import Path

import orjson
import pytest

import edge.progress
from tests.processes import cli, cli_env

DRAWING = ("\x1b[", "\r")
"""What a drawn bar writes (escape sequences, carriage returns) and quiet output never has."""


class Terminal:
    """A pseudo-terminal: hand ``slave`` to a writer, read everything it drew from ``text``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: every writer closed its end
                return
            if not chunk:
                return
            self._chunks.append(chunk)

    def close_writer(self) -> None:
        os.close(self.slave)

    def text(self) -> str:
        """What was drawn, once every writer has closed (reads to the end)."""
        self._reader.join(timeout=120)
        os.close(self.master)
        return b"".join(self._chunks).decode(errors="replace")


def test_helper_draws_n_of_m_on_a_terminal() -> None:
    term = Terminal()
    with os.fdopen(os.dup(term.slave), "w") as stream:
        assert stream.isatty()
        with edge.progress.Progress("importing", 7, unit="files", stream=stream) as bar:
            for done in range(1, 8):
                bar.update(done)
    term.close_writer()
    drawn = term.text()
    assert "importing" in drawn and "7/7" in drawn and "files" in drawn
    assert any(mark in drawn for mark in DRAWING)


def test_helper_is_quiet_in_a_pipe_unless_asked() -> None:
    quiet, forced, off = io.StringIO(), io.StringIO(), io.StringIO()
    for stream, enabled in ((quiet, None), (forced, True), (off, False)):
        with edge.progress.Progress("importing", 3, stream=stream, enabled=enabled) as bar:
            for done in range(4):
                bar.update(done)
    assert quiet.getvalue() == "" and off.getvalue() == ""
    assert "3/3" in forced.getvalue()  # --progress draws even where no terminal is


def _sim(broker_url: str, spool: Path, *flags: str) -> list[str]:
    return cli("sim", "run", "--broker", broker_url, "--vehicles", "1", "--days", "3",
               "--seed", "5", "--snapshot-s", "0.1", "--no-receipts",
               "--spool-dir", str(spool), *flags)


@pytest.mark.broker
@pytest.mark.slow
def test_sim_run_shows_a_bar_on_a_terminal_and_nothing_in_a_pipe(broker_url: str,
                                                                  tmp_path: Path) -> None:
    term = Terminal()
    on_terminal = subprocess.Popen(_sim(broker_url, tmp_path / "tty"), env=cli_env(),
                                   stdout=subprocess.PIPE, stderr=term.slave)
    term.close_writer()  # the child holds its own copy
    out, _ = on_terminal.communicate(timeout=300)
    drawn = term.text()
    assert on_terminal.returncode == 0, drawn
    assert "simulating" in drawn and "3/3" in drawn and "days" in drawn
    assert b"simulating" not in out  # stdout keeps only the JSON summary

    in_pipe = subprocess.run(_sim(broker_url, tmp_path / "pipe"), env=cli_env(),
                             capture_output=True, text=True, timeout=300)
    assert in_pipe.returncode == 0, in_pipe.stderr
    assert "simulating" not in in_pipe.stderr
    assert not any(mark in in_pipe.stderr for mark in DRAWING)
    assert in_pipe.stdout.strip().splitlines()[-1].startswith("{")


def _fleet_import(folder: Path, db: Path) -> list[str]:
    command = ["fleet", "import", "--db", str(db)]
    for kind in ("vehicles", "customers", "centres", "capacity", "catalogue"):
        command += [f"--{kind}", str(folder / f"{kind}.csv")]
    return cli(*command)


def test_fleet_import_counts_its_files_on_a_terminal_only(tmp_path: Path) -> None:
    folder = tmp_path / "dms"
    subprocess.run(cli("sim", "fleet", "--vehicles", "3", "--out", str(folder)), env=cli_env(),
                   stdout=subprocess.DEVNULL, check=True, timeout=300)
    term = Terminal()
    on_terminal = subprocess.Popen(_fleet_import(folder, tmp_path / "a.duckdb"), env=cli_env(),
                                   stdout=subprocess.PIPE, stderr=term.slave)
    term.close_writer()
    out, _ = on_terminal.communicate(timeout=300)
    drawn = term.text()
    assert on_terminal.returncode == 0, drawn
    assert "importing" in drawn and "5/5" in drawn and "files" in drawn
    assert orjson.loads(out)["tables"]["vehicles"]["inserted"] == 3

    in_pipe = subprocess.run(_fleet_import(folder, tmp_path / "b.duckdb"), env=cli_env(),
                             capture_output=True, text=True, timeout=300)
    assert in_pipe.returncode == 0, in_pipe.stderr
    assert in_pipe.stderr == ""
    assert orjson.loads(in_pipe.stdout)["tables"]["vehicles"]["inserted"] == 3


def _replay(log: Path, broker_url: str, spool: Path) -> list[str]:
    return cli("edge", "replay", str(log), "--broker", broker_url, "--vehicle", "PROGRESS",
               "--spool-dir", str(spool), "--taps", "")


@pytest.mark.broker
def test_edge_replay_counts_the_megabytes_of_logs_read_on_a_terminal_only(
        broker_url: str, tmp_path: Path) -> None:
    # 2.4 MB of candump text: the bar ends at 3/3 MB (whole megabytes, rounded up).
    log = tmp_path / "drive.log"
    with log.open("w") as recording:
        for i in range(60_000):
            recording.write(f"({1_767_225_600 + i / 100:.6f}) can0 123#{i % 256:02X}00000000\n")
    env = dict(cli_env(), FLEETCARE_EDGE__RECEIPTS="false")  # no ingest behind this broker
    term = Terminal()
    on_terminal = subprocess.Popen(_replay(log, broker_url, tmp_path / "tty"), env=env,
                                   stdout=subprocess.PIPE, stderr=term.slave)
    term.close_writer()
    out, _ = on_terminal.communicate(timeout=300)
    drawn = term.text()
    assert on_terminal.returncode == 0, drawn
    assert "replaying" in drawn and "3/3" in drawn and "MB of logs" in drawn
    assert orjson.loads(out.splitlines()[-1])["frames_read"] == 60_000

    in_pipe = subprocess.run(_replay(log, broker_url, tmp_path / "pipe"), env=env,
                             capture_output=True, text=True, timeout=300)
    assert in_pipe.returncode == 0, in_pipe.stderr
    assert "replaying" not in in_pipe.stderr
    assert not any(mark in in_pipe.stderr for mark in DRAWING)


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_steps_logged_far_away_are_drawn_only_inside_bar_from_log() -> None:
    # A flow's task reports its steps as log records from a thread of its own.
    steps = logging.getLogger(f"{edge.progress.PROGRESS_LOGGER}.work")
    root = logging.getLogger()
    reached_root: list[logging.LogRecord] = []
    listener = _Collect(reached_root)
    root.addHandler(listener)
    level = root.level
    root.setLevel(logging.WARNING)  # the command line's default verbosity

    def work() -> None:
        for done in range(1, 4):
            steps.info("did %d", done, extra={"progress": (done, 3)})

    drawn = io.StringIO()
    try:
        with edge.progress.bar_from_log("work", "working", unit="steps", enabled=True,
                                        stream=drawn):
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
        assert "working" in drawn.getvalue() and "3/3" in drawn.getvalue()
        assert reached_root == []  # drawn, not also logged
        work()  # outside the block: INFO, below the default verbosity, goes nowhere
        assert reached_root == []
    finally:
        root.removeHandler(listener)
        root.setLevel(level)
    assert steps.level == logging.NOTSET and steps.propagate  # as it was before the block

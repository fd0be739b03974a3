"""The on-disk spool: durable, ordered, bounded, and honest about what it evicted."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import SpoolError
from edge.spool import Priority, Spool


def test_entries_survive_a_restart_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = spool.append("a/b", b"one")
    second = spool.append("a/c", b"two")
    spool.close()
    reopened = Spool(tmp_path)
    assert reopened.pending() == [first, second]
    entry = reopened.read(second)
    assert entry is not None and (entry.topic, entry.payload) == ("a/c", b"two")
    assert reopened.append("a/d", b"three") > second
    assert reopened.stats().pending_bytes == len("a/bone") + len("a/ctwo") + len("a/dthree")


def test_ack_removes_only_that_entry(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    keep, gone = spool.append("t", b"x"), spool.append("t", b"y")
    spool.ack(gone)
    spool.ack(gone)  # a duplicate PUBACK is harmless
    assert spool.pending() == [keep]
    assert spool.read(gone) is None
    assert spool.stats().acked == 1
    assert Spool(tmp_path).pending() == [keep]


def test_kill_9_right_after_append_keeps_the_entry(tmp_path: Path) -> None:
    # A child process appends and is SIGKILLed by itself at once: no close, no flush.
    script = (
        "import os, signal, sys\n"
        "from edge.spool import Spool\n"
        "spool = Spool(sys.argv[1])\n"
        "for i in range(20):\n"
        "    spool.append('t', str(i).encode())\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)],
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == -9
    spool = Spool(tmp_path)
    payloads = [e.payload for s in spool.pending() if (e := spool.read(s))]
    assert payloads == [str(i).encode() for i in range(20)]


def test_full_spool_evicts_telemetry_before_events_and_faults(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100, fsync=False)
    fault = spool.append("f", bytes(19), priority=Priority.FAULT)
    event = spool.append("e", bytes(19), priority=Priority.EVENT)
    telemetry = [spool.append("t", bytes(19)) for _ in range(3)]  # 100 bytes: full
    newest = spool.append("t", bytes(19))
    # The oldest telemetry went first; the older fault and event stayed.
    assert spool.pending() == [fault, event, *telemetry[1:], newest]
    assert spool.stats().dropped_by_priority == {"telemetry": 1}
    # Once no telemetry is left, events go before faults, oldest first within each class.
    for _ in range(4):
        spool.append("f", bytes(19), priority=Priority.FAULT)
    stats = spool.stats()
    assert stats.dropped_by_priority == {"telemetry": 4, "event": 1}
    assert stats.dropped == 5 and stats.dropped_bytes == 100
    assert spool.pending()[0] == fault
    assert stats.pending_bytes <= 100
    spool.close()
    assert Spool(tmp_path).stats().dropped_by_priority == {"telemetry": 4, "event": 1}


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpoolError, match="spool"):
        Spool(blocker / "spool")
    assert os.path.exists(blocker)

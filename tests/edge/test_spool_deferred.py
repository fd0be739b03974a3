"""PUBACK deletes ride the next append's transaction; fresh entries reach the publisher from
memory. Neither may lose an entry or deliver one twice within a run, and a crash in between
only means some acknowledged messages are sent again."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from edge.publish import Publisher
from edge.spool import KEEP_UNSENT_BYTES, Spool
from edge.wire import contract
from tests.contract_subscriber import ContractSubscriber

REPO = Path(__file__).resolve().parents[2]


def _on_disk(directory: Path) -> list[int]:
    """What a restarted agent would find: the rows, read through a spool of its own."""
    other = Spool(directory)
    try:
        return other.pending()
    finally:
        other.close()


def test_an_acknowledged_entry_leaves_at_once_and_its_row_with_the_next_append(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    keep, gone = spool.append("t", b"x"), spool.append("t", b"y")
    spool.ack_later([gone])
    spool.ack_later([gone])  # a duplicate PUBACK is harmless
    assert spool.pending() == [keep]
    assert spool.read(gone) is None
    assert not spool.empty()
    stats = spool.stats()
    assert (stats.pending, stats.pending_bytes, stats.acked) == (1, len("tx"), 1)
    assert _on_disk(tmp_path) == [keep, gone]  # a crash now: sent again, landed once
    newest = spool.append("t", b"z")
    assert _on_disk(tmp_path) == [keep, newest]
    spool.ack_later([keep, newest])
    assert spool.empty() and spool.pending() == []
    spool.close()  # a clean stop writes what is deferred
    assert _on_disk(tmp_path) == []
    assert Spool(tmp_path).stats().pending == 0


def test_flush_acks_deletes_without_an_append(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    seqs = [spool.append("t", bytes([i])) for i in range(3)]
    spool.ack_later(seqs[:2])
    spool.flush_acks()
    assert _on_disk(tmp_path) == seqs[2:]
    spool.flush_acks()  # nothing deferred: nothing to do
    assert spool.stats().acked == 2


def test_an_entry_from_before_the_restart_is_deleted_at_once(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    old = first.append("t", b"old")
    first.close()
    spool = Spool(tmp_path)
    spool.ack_later([old, 12345])  # ours from the last run, and one that never was
    assert _on_disk(tmp_path) == []
    assert spool.empty() and spool.stats().acked == 1


def test_kill_9_between_a_puback_and_the_next_append_loses_nothing(tmp_path: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from edge.spool import Spool\n"
        "spool = Spool(sys.argv[1])\n"
        "seqs = [spool.append('t', str(i).encode()) for i in range(5)]\n"
        "spool.ack_later(seqs[:2])\n"
        "if sys.argv[2] == 'append':\n"
        "    spool.append('t', b'new')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    for then, left in (("nothing", [b"0", b"1", b"2", b"3", b"4"]),
                       ("append", [b"2", b"3", b"4", b"new"])):
        directory = tmp_path / then
        done = subprocess.run([sys.executable, "-c", script, str(directory), then],
                              cwd=REPO, check=False)
        assert done.returncode == -9
        spool = Spool(directory)
        payloads = [e.payload for s in spool.pending() if (e := spool.read(s))]
        # Before the append the acknowledged ones are still there (to be sent again);
        # after it they are gone, in the same transaction as the new entry.
        assert payloads == left
        spool.close()


def test_a_full_spool_deletes_acknowledged_entries_before_evicting(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100, fsync=False)
    seqs = [spool.append("t", bytes(19)) for _ in range(5)]  # 100 bytes: full
    spool.ack_later(seqs[:1])
    newest = spool.append("t", bytes(19))
    assert spool.pending() == [*seqs[1:], newest]
    stats = spool.stats()
    assert stats.dropped == 0 and stats.pending_bytes == 100
    spool.ack_later(seqs[1:])
    assert spool.pending() == [newest] and spool.stats().dropped == 0


@pytest.mark.parametrize("keep", [0, 64, KEEP_UNSENT_BYTES])
def test_entries_reach_the_publisher_in_order_whether_kept_in_memory_or_not(
        tmp_path: Path, keep: int) -> None:
    last_run = Spool(tmp_path, keep_unsent_bytes=keep)
    before = last_run.append("t", b"from before")  # on disk only, as after a restart
    last_run.close()
    spool = Spool(tmp_path, keep_unsent_bytes=keep)
    seqs = [before] + [spool.append(f"t/{i}", bytes([i]) * 30) for i in range(6)]
    taken, acked, cursor = [], [], 0
    on_disk = Spool(tmp_path)
    while entries := spool.entries_after(cursor, limit=2):
        assert len(entries) <= 2
        for entry in entries:  # what memory hands out is what the disk holds
            stored = on_disk.read(entry.seq)
            assert stored is not None
            assert (stored.topic, stored.payload) == (entry.topic, entry.payload)
        taken += entries
        cursor = entries[-1].seq
        acked.append(entries[0].seq)
        spool.ack_later([entries[0].seq])  # some acknowledged as they go
    on_disk.close()
    assert [e.seq for e in taken] == seqs
    # A new session starts again from the oldest unacknowledged: read from disk.
    again = [e.seq for e in spool.entries_after(0, limit=100)]
    assert again == [s for s in seqs if s not in acked] == spool.pending()
    fresh = spool.append("t", b"after")
    assert [e.seq for e in spool.entries_after(cursor)] == [fresh]


@pytest.mark.broker
def test_a_publisher_without_receipts_leaves_an_empty_spool_on_disk(broker_url: str,
                                                                     tmp_path: Path) -> None:
    vehicle = f"D{uuid.uuid4().hex[:8]}"
    watcher = ContractSubscriber(broker_url, contract.telemetry_topic(vehicle))
    spool = Spool(tmp_path, keep_unsent_bytes=KEEP_UNSENT_BYTES)
    publisher = Publisher(spool, broker_url, f"test-{vehicle}", window=4)
    publisher.start()
    batches = [contract.TelemetryBatch(f"{vehicle}-{i}", vehicle, [float(i)], ["s"], [1.0])
               for i in range(40)]
    for batch in batches:
        spool.append(contract.telemetry_topic(vehicle), contract.encode(batch))
        publisher.notify()
    assert publisher.wait_drained(20)
    assert watcher.wait_for(lambda: len(watcher.messages) >= len(batches))
    publisher.stop()
    received = [m.msg_id for m in watcher.messages]
    assert sorted(received) == sorted(b.msg_id for b in batches)  # each once
    assert _on_disk(tmp_path) == []  # the last deletes were written at the stop
    spool.close()
    watcher.close()


@pytest.mark.broker
def test_a_backlog_goes_out_whole_through_a_small_window_without_appends(
        broker_url: str, tmp_path: Path) -> None:
    """A full window is refilled when half of it is acknowledged, not only at the next append
    or the half-second tick: 200 entries through a window of 4 with no append to wake the
    publisher would take 25 s of ticks."""
    vehicle = f"B{uuid.uuid4().hex[:8]}"
    watcher = ContractSubscriber(broker_url, contract.telemetry_topic(vehicle))
    spool = Spool(tmp_path, keep_unsent_bytes=KEEP_UNSENT_BYTES)
    batches = [contract.TelemetryBatch(f"{vehicle}-{i:03d}", vehicle, [float(i)], ["s"], [1.0])
               for i in range(200)]
    for batch in batches:  # waiting before the publisher starts: a backlog after an outage
        spool.append(contract.telemetry_topic(vehicle), contract.encode(batch))
    publisher = Publisher(spool, broker_url, f"test-{vehicle}", window=4)
    publisher.start()
    assert watcher.wait_for(lambda: len(watcher.messages) >= len(batches))
    assert publisher.wait_drained(20)
    stats = publisher.stats()
    publisher.stop()
    assert [m.msg_id for m in watcher.messages] == [b.msg_id for b in batches]  # once, in order
    assert stats.published == stats.acked == len(batches)
    assert _on_disk(tmp_path) == []
    spool.close()
    watcher.close()

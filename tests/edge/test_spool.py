"""The on-disk spool: durable, ordered, bounded, and honest about what it dropped."""

from pathlib import Path

from edge.spool import Spool


def test_entries_survive_a_restart_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    first = spool.append("a/b", b"one")
    second = spool.append("a/c", b"two")
    reopened = Spool(tmp_path)
    assert reopened.pending() == [first, second]
    entry = reopened.read(second)
    assert entry is not None and (entry.topic, entry.payload) == ("a/c", b"two")
    assert reopened.append("a/d", b"three") > second


def test_ack_removes_only_that_entry(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    keep, gone = spool.append("t", b"x"), spool.append("t", b"y")
    spool.ack(gone)
    spool.ack(gone)  # a duplicate PUBACK is harmless
    assert spool.pending() == [keep]
    assert spool.read(gone) is None
    assert spool.stats().acked == 1
    assert Spool(tmp_path).pending() == [keep]


def test_interrupted_write_is_discarded(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append("t", b"whole")
    (tmp_path / "0000000000000099.tmp").write_bytes(b"half")
    reopened = Spool(tmp_path)
    assert len(reopened.pending()) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_full_spool_drops_oldest_and_counts_it(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=100, fsync=False)
    seqs = [spool.append("t", bytes(30)) for _ in range(5)]
    stats = spool.stats()
    assert stats.pending_bytes <= 100
    assert stats.dropped == 5 - stats.pending
    assert stats.dropped_bytes > 0
    assert spool.pending() == seqs[-stats.pending:]

"""The batch writer: events share a transaction with the batch before them; the background
writer stores everything handed to it, in order, and after a failed write stores nothing more.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge.batch import BatchWriter
from edge.errors import SpoolError
from edge.spool import Priority, Spool
from edge.wire import contract


class _Notes:
    def __init__(self) -> None:
        self.count = 0

    def notify(self) -> None:
        self.count += 1


def _kinds(spool: Spool) -> list[tuple[str, int]]:
    """(kind, samples) of every spooled message, in spool order."""
    out = []
    for seq in spool.pending():
        entry = spool.read(seq)
        assert entry is not None
        body = orjson.loads(entry.payload)
        out.append((body["kind"], len(body.get("ts", body.get("events", [])))))
    return out


def _fill(writer: BatchWriter, n: int, t0: float = 0.0) -> None:
    for i in range(n):
        writer.ts.append(t0 + i)
        writer.signal.append("Vehicle.Speed")
        writer.value.append(float(i))


def test_a_fault_code_goes_in_one_transaction_with_the_open_batch(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    commits: list[int] = []
    append_many = spool.append_many

    def spy(messages: list[tuple[str, bytes, Priority]], **kw: Any) -> list[int]:
        commits.append(len(messages))
        return append_many(messages, **kw)

    spool.append_many = spy  # type: ignore[method-assign,assignment]
    writer = BatchWriter("V1", spool, None, batch_signals=100, checkpoint=lambda: ("k", 7))
    _fill(writer, 3)
    writer.spool_dtcs([contract.DtcEvent(1.0, "P0A80", "stored", "0x10", "can")])
    assert commits == [2]
    assert _kinds(spool) == [("telemetry", 3), ("dtc", 1)]
    assert spool.checkpoint("k") == 7
    assert (writer.messages, writer.signals_spooled) == (2, 3)


def test_background_writes_are_all_stored_in_order_and_counted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=True)
    notes = _Notes()
    writer = BatchWriter("V1", spool, notes, batch_signals=10)
    writer.start_background()
    for round_ in range(50):
        _fill(writer, 10, t0=round_ * 10)
        writer.flush()
        if round_ % 7 == 0:
            writer.spool_event([(round_ * 10 + 9.5, "Crank.Dip", 1.5)])
    writer.stop_background()
    kinds = _kinds(spool)
    assert kinds.count(("telemetry", 10)) == 50 and kinds.count(("telemetry", 1)) == 8
    assert (writer.messages, writer.signals_spooled) == (58, 508)
    assert notes.count >= 1
    stamps = []
    for seq in spool.pending():
        entry = spool.read(seq)
        assert entry is not None
        stamps += orjson.loads(entry.payload)["ts"]
    assert stamps == sorted(stamps)  # the order handed over is the order stored


def test_after_a_failed_background_write_nothing_more_is_stored(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    append_many = spool.append_many
    calls = 0
    release = threading.Event()

    def failing_second(messages: list[tuple[str, bytes, Priority]], **kw: Any) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 2:
            release.wait(5)
            raise SpoolError("disk full")
        return append_many(messages, **kw)

    spool.append_many = failing_second  # type: ignore[method-assign,assignment]
    writer = BatchWriter("V1", spool, None, batch_signals=10, checkpoint=lambda: ("k", calls))
    writer.start_background()
    _fill(writer, 10)
    writer.flush()
    while calls < 1:
        threading.Event().wait(0.01)
    _fill(writer, 10)
    writer.flush()  # the write that fails
    _fill(writer, 10)
    writer.flush()  # handed over behind it: must not be stored
    release.set()
    with pytest.raises(SpoolError, match="disk full"):
        writer.stop_background()
    assert _kinds(spool) == [("telemetry", 10)]
    assert (writer.messages, writer.signals_spooled) == (1, 10)
    with pytest.raises(SpoolError):
        _fill(writer, 1)
        writer.spool_event([(0.0, "x", 1.0)])


def test_a_batch_that_would_be_oversize_is_split_and_every_sample_spooled(
        tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    writer = BatchWriter("V1", spool, None, batch_signals=30_000)
    name = "Vehicle.Powertrain.TractionBattery.CellVoltage.Cell" + "X" * 40
    for i in range(30_000):
        writer.ts.append(1_767_225_600.0 + i / 1000)
        writer.signal.append(f"{name}{i % 96:02d}")
        writer.value.append(3.7 + i * 1e-6)
    whole = len(contract.encode(contract.TelemetryBatch("m", "V1", writer.ts, writer.signal,
                                                        writer.value)))
    assert whole > contract.MAX_PAYLOAD_BYTES  # the premise: one message would be refused
    writer.flush()
    entries = [spool.read(seq) for seq in spool.pending()]
    assert len(entries) > 1
    decoded = []
    for entry in entries:
        assert entry is not None and len(entry.payload) <= contract.MAX_PAYLOAD_BYTES
        message = contract.decode(entry.payload)
        assert isinstance(message, contract.TelemetryBatch)
        decoded.append(message)
    assert len({m.msg_id for m in decoded}) == len(decoded)
    assert [t for m in decoded for t in m.ts] == [1_767_225_600.0 + i / 1000
                                                  for i in range(30_000)]
    assert writer.signals_spooled == 30_000 and writer.messages == len(decoded)


def test_writes_held_for_a_block_reach_the_writer_together_at_its_end(tmp_path: Path) -> None:
    spool = Spool(tmp_path, fsync=False)
    append_many = spool.append_many
    writes: list[tuple[int, tuple[str, int] | None]] = []
    busy, go = threading.Event(), threading.Event()

    def slow_first(messages: list[tuple[str, bytes, Priority]], **kw: Any) -> list[int]:
        writes.append((len(messages), kw.get("checkpoint")))
        if len(writes) == 1:
            busy.set()
            go.wait(5)
        return append_many(messages, **kw)

    spool.append_many = slow_first  # type: ignore[method-assign,assignment]
    position = 0

    def checkpoint() -> tuple[str, int]:
        return "k", position

    writer = BatchWriter("V1", spool, None, batch_signals=10, checkpoint=checkpoint)
    writer.start_background()
    _fill(writer, 10)
    writer.flush()  # the writer takes it and waits in the spool
    assert busy.wait(5)
    writer.hold()
    for position in (10, 20):
        _fill(writer, 10, t0=position)
        writer.flush()
    position = 25
    writer.spool_dtcs([contract.DtcEvent(25.0, "P0A80", "stored", "0x10", "can")])
    assert writer._queue is not None and writer._queue.empty()  # held, not handed over
    writer.release()
    assert writer._queue.qsize() == 1  # three messages, one hand-over
    go.set()
    writer.stop_background()
    assert writes == [(1, ("k", 0)), (3, ("k", 25))]
    assert _kinds(spool) == [("telemetry", 10), ("telemetry", 10), ("telemetry", 10), ("dtc", 1)]
    assert spool.checkpoint("k") == 25
    assert (writer.messages, writer.signals_spooled) == (4, 30)

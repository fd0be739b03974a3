"""Telemetry payloads into Arrow columns, converted and validated a whole batch at a time.

The wire's telemetry is already columnar (``ts[]``, ``signal[]``, ``value[]``), so the
backend never builds one Python object per sample: the lists orjson parsed are chained into
three batch-wide lists and each becomes one Arrow array (a ``pa.array`` call has a fixed
cost of a few microseconds, which per message and column was a fifth of ingest's CPU). The
checks that would cost a Python call per value (types, nulls, finite, plausible time) run
once per batch in Arrow. Only when a batch fails them are the guilty messages looked up, one
by one, so good traffic pays a few vectorised calls per 100k rows and a bad message still
gets its own dead letter with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edge.wire import ContractError

MIN_TS: Final = 946_684_800.0
"""2000-01-01T00:00:00Z: an earlier sample time is a broken clock or wrong units."""
MAX_TS: Final = 4_102_444_800.0
"""2100-01-01T00:00:00Z: a later one is usually milliseconds sent as seconds."""

TELEMETRY_SCHEMA: Final = pa.schema([
    pa.field("ts", pa.float64(), nullable=False),
    pa.field("signal", pa.string(), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
])


@dataclass(frozen=True, slots=True)
class Samples:
    """A telemetry payload's three arrays as orjson parsed them, checked for shape only."""

    ts: list[Any]
    signal: list[Any]
    value: list[Any]

    def __len__(self) -> int:
        return len(self.ts)


def telemetry_samples(doc: dict[str, Any]) -> Samples:
    """The ``ts``, ``signal`` and ``value`` lists of a parsed payload (no per-value work).

    Raises:
        ContractError: a column is missing, is not an array, or the three differ in length.
    """
    columns = []
    for name in ("ts", "signal", "value"):
        column = doc.get(name)
        if column is None:
            raise ContractError(f"malformed telemetry payload: missing {name!r}")
        if not isinstance(column, list):
            raise ContractError(f"malformed telemetry payload: {name} must be an array")
        columns.append(column)
    ts, signal, value = columns
    if not (len(ts) == len(signal) == len(value)):
        raise ContractError(
            f"malformed telemetry payload: ts, signal and value must have the same length "
            f"(got {len(ts)}, {len(signal)}, {len(value)})")
    return Samples(ts, signal, value)


def samples_columns(samples: Sequence[Samples]) -> tuple[pa.RecordBatch, list[int],
                                                         dict[int, str]]:
    """Every message's samples as one record batch, and why some messages cannot land.

    Returns the record batch (the messages' rows in order), how many rows each message has
    in it (0 when its values did not convert), and a map from position to dead-letter reason
    for messages whose values do not convert, hold nulls, are not finite, or whose times are
    implausible, or are JSON booleans. The rows of messages refused for values or times are
    still in the batch: the caller selects the rows it lands by message.
    """
    ts: list[Any] = []
    signal: list[Any] = []
    value: list[Any] = []
    for s in samples:
        ts += s.ts
        signal += s.signal
        value += s.value
    try:
        whole = _record_batch(ts, signal, value)
    except ContractError:
        return _one_by_one(samples)
    counts = [len(s.ts) for s in samples]
    return whole, counts, _invalid_rows(whole, counts) | _boolean_rows(whole, counts, ts, value)


def _one_by_one(samples: Sequence[Samples]) -> tuple[pa.RecordBatch, list[int],
                                                     dict[int, str]]:
    batches: list[pa.RecordBatch] = []
    counts: list[int] = []
    reasons: dict[int, str] = {}
    for index, s in enumerate(samples):
        try:
            batches.append(_record_batch(s.ts, s.signal, s.value))
            counts.append(len(s.ts))
        except ContractError as exc:
            counts.append(0)
            reasons[index] = str(exc)
    table = pa.Table.from_batches(batches, schema=TELEMETRY_SCHEMA)
    whole = pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns],
                                       schema=TELEMETRY_SCHEMA)
    good = [i for i in range(len(counts)) if i not in reasons]
    lengths = [counts[i] for i in good]
    bad = _invalid_rows(whole, lengths) | _boolean_rows(
        whole, lengths, [t for i in good for t in samples[i].ts],
        [v for i in good for v in samples[i].value])
    reasons.update({good[i]: reason for i, reason in bad.items()})
    return whole, counts, reasons


def _record_batch(ts: list[Any], signal: list[Any], value: list[Any]) -> pa.RecordBatch:
    try:
        arrays = [pa.array(ts, pa.float64()), pa.array(signal, pa.string()),
                  pa.array(value, pa.float64())]
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
        raise ContractError(f"malformed telemetry payload: {exc}") from exc
    for name, column in zip(("ts", "signal", "value"), arrays, strict=True):
        if column.null_count:
            raise ContractError(f"malformed telemetry payload: {name} holds "
                                f"{column.null_count} null(s)")
    return pa.RecordBatch.from_arrays(arrays, schema=TELEMETRY_SCHEMA)


def telemetry_columns(doc: dict[str, Any]) -> pa.RecordBatch:
    """The ``ts``, ``signal`` and ``value`` arrays of one parsed telemetry payload.

    Raises:
        ContractError: a column is missing, holds the wrong type or nulls, or the three
            differ in length; the message says which.
    """
    samples = telemetry_samples(doc)
    return _record_batch(samples.ts, samples.signal, samples.value)


def invalid_messages(batches: Sequence[pa.RecordBatch]) -> dict[int, str]:
    """Which of ``batches`` hold a non-finite value or an implausible time, and why.

    Returns a map from position in ``batches`` to a dead-letter reason; empty when all pass.
    """
    if not batches:
        return {}
    return _invalid_rows(pa.Table.from_batches(batches, schema=TELEMETRY_SCHEMA),
                         [b.num_rows for b in batches])


def _invalid_rows(table: pa.Table | pa.RecordBatch, lengths: Sequence[int]) -> dict[int, str]:
    """Reasons by message for rows of ``table`` (messages of ``lengths`` rows, in order)
    that hold a non-finite value or an implausible time."""
    if not lengths:
        return {}
    ts, value = table.column("ts"), table.column("value")
    bad_value = pc.invert(pc.is_finite(value))
    bad_ts = pc.or_(pc.invert(pc.is_finite(ts)),
                    pc.or_(pc.less(ts, MIN_TS), pc.greater_equal(ts, MAX_TS)))
    bad = pc.or_(bad_value, bad_ts)
    if not pc.any(bad).as_py():
        return {}
    rows = np.flatnonzero(np.asarray(bad))
    starts = np.cumsum([0, *lengths[:-1]])
    reasons: dict[int, str] = {}
    for row in rows:
        index = int(np.searchsorted(starts, row, side="right") - 1)
        if index not in reasons:
            reasons[index] = _reason(table, int(row), int(row - starts[index]))
    return reasons


def _boolean_rows(table: pa.Table | pa.RecordBatch, lengths: Sequence[int], ts: Sequence[Any],
                  value: Sequence[Any]) -> dict[int, str]:
    """Reasons by message for rows whose time or value was a JSON ``true``/``false``.

    Arrow converts booleans to 1.0 and 0.0 without a word, so a signal a producer encoded as
    a boolean would land as a number nobody sent. Only a message with a row that came out as
    exactly 0 or 1 can hold one, so the converted columns pick those messages (vectorised)
    and only their slices of ``ts`` and ``value``, the lists Arrow was given, are searched
    for the ``bool`` type (in C, through ``map``); a Python loop runs only in a message that
    really holds one, to name the position. Good traffic pays two comparisons per row.
    """
    reasons: dict[int, str] = {}
    if not lengths:
        return reasons
    starts = np.cumsum([0, *lengths[:-1]])
    for name, column in (("ts", ts), ("value", value)):  # a value's reason wins: set last
        maybe = pc.is_in(table.column(name), value_set=_ZERO_ONE)
        if not pc.any(maybe).as_py():
            continue
        suspects = np.unique(np.searchsorted(starts, np.flatnonzero(np.asarray(maybe)),
                                             side="right") - 1)
        for index in suspects.tolist():
            start = int(starts[index])
            part = column[start:start + lengths[index]]
            if bool in set(map(type, part)):
                at = next(i for i, item in enumerate(part) if item is True or item is False)
                reasons[index] = (f"validation: {name}[{at}] = {str(part[at]).lower()} is a "
                                  f"boolean, not a number")
    return reasons


_ZERO_ONE: Final = pa.array([0.0, 1.0], pa.float64())


def _reason(table: pa.Table | pa.RecordBatch, at: int, row: int) -> str:
    ts = table.column(0)[at].as_py()
    value = table.column(2)[at].as_py()
    if not np.isfinite(value):
        return f"validation: value[{row}] = {value} is not a finite number"
    return (f"validation: ts[{row}] = {ts} is not a Unix time in seconds between "
            f"2000 and 2100 (milliseconds sent as seconds?)")


def telemetry_table(rows: pa.RecordBatch, counts: Sequence[int], vehicle_ids: Sequence[str],
                    msg_ids: Sequence[str]) -> pa.Table:
    """``rows`` (``counts[i]`` of them from message i, in order) with each message's vehicle
    and id repeated per row.

    The repeated columns are dictionary-encoded (one string per message, an int32 index
    per row), so no Python string is made per sample.
    """
    indices = pa.array(np.repeat(np.arange(len(counts), dtype=np.int32),
                                 np.asarray(counts, dtype=np.int64)))
    return pa.Table.from_batches([rows], schema=TELEMETRY_SCHEMA).append_column(
        "vehicle_id", pa.DictionaryArray.from_arrays(indices, pa.array(vehicle_ids, pa.string()))
    ).append_column(
        "msg_id", pa.DictionaryArray.from_arrays(indices, pa.array(msg_ids, pa.string())))


def warm_up() -> None:
    """Run the whole decode-and-check path once on a tiny batch.

    pyarrow imports some modules (its pandas shim, compute kernels) on first use, which
    takes up to a second; a subscriber calls this at start so its first batch does not wait.
    """
    batch = telemetry_columns({"ts": [MIN_TS], "signal": ["warm-up"], "value": [0.0]})
    invalid_messages([batch])
    samples_columns([telemetry_samples({"ts": [MIN_TS], "signal": ["w"], "value": [0.0]})])
    telemetry_table(batch, [1], ["V"], ["m"])

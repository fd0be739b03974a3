"""Telemetry payloads straight into Arrow columns, validated a whole batch at a time.

The wire's telemetry is already columnar (``ts[]``, ``signal[]``, ``value[]``), so the
backend never builds one Python object per sample: each array becomes an Arrow array as
soon as orjson has parsed it, and the checks that would cost a Python call per value
(finite, plausible time) run once per batch with ``pyarrow.compute``. Only when a batch
fails them are the guilty messages looked up, so good traffic pays a few vectorised calls
per 100k rows and a bad message still gets its own dead letter with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from edge.errors import ContractError

MIN_TS: Final = 946_684_800.0
"""2000-01-01T00:00:00Z: an earlier sample time is a broken clock or wrong units."""
MAX_TS: Final = 4_102_444_800.0
"""2100-01-01T00:00:00Z: a later one is usually milliseconds sent as seconds."""

TELEMETRY_SCHEMA: Final = pa.schema([
    pa.field("ts", pa.float64(), nullable=False),
    pa.field("signal", pa.string(), nullable=False),
    pa.field("value", pa.float64(), nullable=False),
])


def telemetry_columns(doc: dict[str, Any]) -> pa.RecordBatch:
    """The ``ts``, ``signal`` and ``value`` arrays of a parsed telemetry payload.

    Raises:
        ContractError: a column is missing, holds the wrong type or nulls, or the three
            differ in length; the message says which.
    """
    try:
        ts = pa.array(doc["ts"], pa.float64())
        signal = pa.array(doc["signal"], pa.string())
        value = pa.array(doc["value"], pa.float64())
    except KeyError as exc:
        raise ContractError(f"malformed telemetry payload: missing {exc}") from exc
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise ContractError(f"malformed telemetry payload: {exc}") from exc
    if not (len(ts) == len(signal) == len(value)):
        raise ContractError(
            f"malformed telemetry payload: ts, signal and value must have the same length "
            f"(got {len(ts)}, {len(signal)}, {len(value)})")
    for name, column in (("ts", ts), ("signal", signal), ("value", value)):
        if column.null_count:
            raise ContractError(f"malformed telemetry payload: {name} holds "
                                f"{column.null_count} null(s)")
    return pa.RecordBatch.from_arrays([ts, signal, value], schema=TELEMETRY_SCHEMA)


def invalid_messages(batches: Sequence[pa.RecordBatch]) -> dict[int, str]:
    """Which of ``batches`` hold a non-finite value or an implausible time, and why.

    Returns a map from position in ``batches`` to a dead-letter reason; empty when all pass.
    """
    if not batches:
        return {}
    table = pa.Table.from_batches(batches, schema=TELEMETRY_SCHEMA)
    ts, value = table.column("ts"), table.column("value")
    bad_value = pc.invert(pc.is_finite(value))
    bad_ts = pc.or_(pc.invert(pc.is_finite(ts)),
                    pc.or_(pc.less(ts, MIN_TS), pc.greater_equal(ts, MAX_TS)))
    bad = pc.or_(bad_value, bad_ts)
    if not pc.any(bad).as_py():
        return {}
    rows = np.flatnonzero(bad.to_numpy())
    starts = np.cumsum([0] + [b.num_rows for b in batches[:-1]])
    reasons: dict[int, str] = {}
    for row in rows:
        index = int(np.searchsorted(starts, row, side="right") - 1)
        if index not in reasons:
            reasons[index] = _reason(batches[index], int(row - starts[index]))
    return reasons


def _reason(batch: pa.RecordBatch, row: int) -> str:
    ts = batch.column(0)[row].as_py()
    value = batch.column(2)[row].as_py()
    if not np.isfinite(value):
        return f"validation: value[{row}] = {value} is not a finite number"
    return (f"validation: ts[{row}] = {ts} is not a Unix time in seconds between "
            f"2000 and 2100 (milliseconds sent as seconds?)")


def telemetry_table(batches: Sequence[pa.RecordBatch], vehicle_ids: Sequence[str],
                    msg_ids: Sequence[str]) -> pa.Table:
    """One table of every sample, with each message's vehicle and id repeated per row.

    The repeated columns are dictionary-encoded (one string per message, an int32 index
    per row), so no Python string is made per sample.
    """
    lengths = np.fromiter((b.num_rows for b in batches), np.int64, len(batches))
    indices = pa.array(np.repeat(np.arange(len(batches), dtype=np.int32), lengths))
    table = pa.Table.from_batches(batches, schema=TELEMETRY_SCHEMA).combine_chunks()
    return table.append_column(
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
    telemetry_table([batch], ["V"], ["m"])

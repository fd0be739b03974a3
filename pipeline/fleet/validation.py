"""Reading the master-data files and listing every problem in them, before anything is applied.

A file is read whole: every cell through its column's reader, every key checked for repeats,
every reference (a vehicle's centre and customer, a capacity row's centre) checked against the
other files of the same import and what the store already holds. Each problem is one
:class:`Problem`, printed ``file:line: column: what is wrong``, so a DMS export with twenty
bad lines is fixed in one round rather than twenty.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pipeline.fleet.files import CAPACITY, CUSTOMERS, SPECS, VEHICLES, FileSpec
from pipeline.fleet.vin_policy import DEFAULT_POLICY, VinPolicy, register_vin_problem

FILE_COLUMN: Final = "(file)"
"""The column named by a problem with the file as a whole (unreadable, not UTF-8, empty)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in one file, at one line and column."""

    path: str
    line: int
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """One file's rows as stored values, with the line each came from."""

    spec: FileSpec
    path: str
    rows: tuple[dict[str, Any], ...] = ()
    lines: tuple[int, ...] = ()
    extra_columns: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreKeys:
    """What the store already holds that the files may refer to."""

    centres: frozenset[str] = frozenset()
    customers: frozenset[str] = frozenset()
    vins: Mapping[str, str] = field(default_factory=dict)
    """VIN -> vehicle_id of the vehicles already registered."""


def read_file(spec: FileSpec, path: Path | str, policy: VinPolicy = DEFAULT_POLICY) -> ParsedFile:
    """Read one file: its rows, its extra columns and every problem found in it alone."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return ParsedFile(spec, name, problems=(Problem(name, 0, FILE_COLUMN,
                                                        f"cannot read it: {exc.strerror}"),))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return ParsedFile(spec, name, problems=(Problem(
            name, line, FILE_COLUMN, f"not UTF-8 (byte {data[exc.start]:#04x}): export the "
            "file as UTF-8"),))
    return _parse(spec, name, text, policy)


def _parse(spec: FileSpec, name: str, text: str, policy: VinPolicy) -> ParsedFile:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return ParsedFile(spec, name, problems=(Problem(
            name, 1, FILE_COLUMN, f"empty: the header must name {', '.join(spec.names)}"),))
    except csv.Error as exc:
        return ParsedFile(spec, name, problems=(Problem(name, 1, FILE_COLUMN, str(exc)),))
    problems = [Problem(name, 1, column, "missing from the header")
                for column in spec.names if column not in header]
    problems += [Problem(name, 1, h or "(empty)", "named twice in the header")
                 for i, h in enumerate(header) if h in header[:i]]
    extra = tuple(h for h in header if h not in spec.names)
    if problems:
        return ParsedFile(spec, name, extra_columns=extra, problems=tuple(problems))
    index = {h: header.index(h) for h in spec.names}
    rows: list[dict[str, Any]] = []
    lines: list[int] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # a blank line
            line = reader.line_num
            row, row_problems = _row(spec, name, line, cells, index, len(header), policy)
            problems += row_problems
            if not row_problems:
                rows.append(row)
                lines.append(line)
    except csv.Error as exc:
        problems.append(Problem(name, reader.line_num, FILE_COLUMN, str(exc)))
    problems += _repeated_keys(spec, name, rows, lines)
    return ParsedFile(spec, name, tuple(rows), tuple(lines), extra, tuple(problems))


def _row(spec: FileSpec, name: str, line: int, cells: list[str], index: dict[str, int],
         width: int, policy: VinPolicy) -> tuple[dict[str, Any], list[Problem]]:
    problems = []
    if len(cells) != width:
        problems.append(Problem(name, line, FILE_COLUMN,
                                f"{len(cells)} fields where the header has {width}"))
    row: dict[str, Any] = {}
    for column in spec.columns:
        position = index[column.name]
        raw = cells[position].strip() if position < len(cells) else ""
        if not raw:
            if column.required:
                problems.append(Problem(name, line, column.name, "empty, and it is required"))
            row[column.name] = None
            continue
        try:
            row[column.name] = column.read(raw)
        except ValueError as exc:
            problems.append(Problem(name, line, column.name, str(exc)))
    if spec is VEHICLES and row.get("vin") and row.get("region"):
        problem = register_vin_problem(row["vin"], row["region"], policy)
        if problem is not None:
            problems.append(Problem(name, line, "vin", problem))
    return row, problems


def _repeated_keys(spec: FileSpec, name: str, rows: list[dict[str, Any]],
                   lines: list[int]) -> list[Problem]:
    problems = []
    seen: dict[tuple[Any, ...], int] = {}
    for row, line in zip(rows, lines, strict=True):
        key = tuple(row[k] for k in spec.key)
        if key in seen:
            problems.append(Problem(name, line, spec.key[-1],
                                    f"{_key_text(key)} is already on line {seen[key]}"))
        else:
            seen[key] = line
    if spec is VEHICLES:
        vins: dict[str, int] = {}
        for row, line in zip(rows, lines, strict=True):
            if row["vin"] in vins:
                problems.append(Problem(name, line, "vin", f"VIN {row['vin']!r} is already "
                                        f"on line {vins[row['vin']]}"))
            vins.setdefault(row["vin"], line)
    return problems


def _key_text(key: tuple[Any, ...]) -> str:
    return " ".join(repr(str(k)) for k in key)


def cross_check(files: Iterable[ParsedFile], store: StoreKeys) -> list[Problem]:
    """References between the files and to the store: centres, customers, VINs."""
    by_kind = {f.spec.kind: f for f in files}
    centres = store.centres | _keys(by_kind.get("centres"))
    customers = store.customers | _keys(by_kind.get(CUSTOMERS.kind))
    problems: list[Problem] = []
    vehicles = by_kind.get(VEHICLES.kind)
    if vehicles is not None:
        # a vehicle of this file that holds a VIN in the store gets the file's VIN: only
        # owners the file does not mention keep theirs
        in_file = {row["vehicle_id"] for row in vehicles.rows}
        for row, line in zip(vehicles.rows, vehicles.lines, strict=True):
            if row["centre_id"] is not None and row["centre_id"] not in centres:
                problems.append(Problem(vehicles.path, line, "centre_id",
                                        f"no centre {row['centre_id']!r} in the centres file "
                                        "or the store"))
            if row["customer_id"] is not None and row["customer_id"] not in customers:
                problems.append(Problem(vehicles.path, line, "customer_id",
                                        f"no customer {row['customer_id']!r} in the customers "
                                        "file or the store"))
            owner = store.vins.get(row["vin"])
            if owner is not None and owner != row["vehicle_id"] and owner not in in_file:
                problems.append(Problem(vehicles.path, line, "vin",
                                        f"VIN {row['vin']!r} is registered to vehicle "
                                        f"{owner!r} already"))
    capacity = by_kind.get(CAPACITY.kind)
    if capacity is not None:
        for row, line in zip(capacity.rows, capacity.lines, strict=True):
            if row["centre_id"] not in centres:
                problems.append(Problem(capacity.path, line, "centre_id",
                                        f"no centre {row['centre_id']!r} in the centres file "
                                        "or the store"))
    return problems


def _keys(parsed: ParsedFile | None) -> frozenset[str]:
    if parsed is None:
        return frozenset()
    return frozenset(str(row[parsed.spec.key[0]]) for row in parsed.rows)


def read_files(paths: Mapping[str, Path | str], store: StoreKeys,
               policy: VinPolicy = DEFAULT_POLICY, *, references: bool = True,
               ) -> tuple[list[ParsedFile], list[Problem]]:
    """Read every given file (keyed by kind) and every problem, in file and line order.

    ``references=False`` skips :func:`cross_check` (ingest's register file names customers and
    centres that live in the serving store, not in ingest's).
    """
    parsed = [read_file(spec, paths[spec.kind], policy) for spec in SPECS if spec.kind in paths]
    problems = [p for f in parsed for p in f.problems]
    if references:
        problems += cross_check(parsed, store)
    order = {f.path: i for i, f in enumerate(parsed)}
    problems.sort(key=lambda p: (order.get(p.path, 0), p.line))
    return parsed, problems

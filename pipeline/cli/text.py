"""Human output for documents the CLI shows: indented ``name: value`` lines.

A show command prints its record as JSON with ``--json``; without it, a person reads it. A
dict or list repr (``{'cost': 1.0}``, ``['a', 'b']``, ``None``) is Python's notation, not
an answer, so nested records become indented lines and single values are spelled out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["format_fields", "format_value"]

_INDENT = "  "


def format_value(value: Any) -> str:
    """One scalar as a person reads it: ``-`` for nothing, yes/no, dates in ISO 8601."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _is_scalar_list(value: Any) -> bool:
    return (isinstance(value, Sequence) and not isinstance(value, str | bytes)
            and all(not isinstance(v, Mapping | list | tuple) for v in value))


def _lines(document: Mapping[str, Any], depth: int) -> list[str]:
    lines: list[str] = []
    pad = _INDENT * depth
    for key, value in document.items():
        if isinstance(value, Mapping):
            lines += [f"{pad}{key}:", *(_lines(value, depth + 1) if value
                                        else [f"{pad}{_INDENT}-"])]
        elif _is_scalar_list(value):
            lines.append(f"{pad}{key}: {', '.join(map(format_value, value)) or '-'}")
        elif isinstance(value, list | tuple):
            lines.append(f"{pad}{key}:")
            for number, item in enumerate(value, 1):
                lines.append(f"{pad}{_INDENT}{number}.")
                lines += (_lines(item, depth + 2) if isinstance(item, Mapping)
                          else [f"{pad}{_INDENT * 2}{format_value(item)}"])
        else:
            lines.append(f"{pad}{key}: {format_value(value)}")
    return lines


def format_fields(document: Mapping[str, Any]) -> str:
    """``document`` as ``name: value`` lines, nested mappings indented under their name."""
    return "\n".join(_lines(document, 0))

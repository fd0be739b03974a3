"""Secrets read from files: the ``<field>_file`` settings of the agent and of the backend.

A secret in an environment variable is inherited by every child process and shows up in
``/proc/<pid>/environ``; a secret in a shared config file is shared with the fleet. Both
configurations therefore let each secret come from a file of its own (a systemd credential,
a Docker or Kubernetes secret), and both must read that file the same way, so the reader is
here, beside the other things both sides share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_secret_files(data: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``data`` with each secret ``field`` filled from the file ``<field>_file``
    names (``data`` itself is left as it is).

    The file's content is the secret, less one trailing line break (``echo pw > file``).
    The error is a ``ValueError`` because this runs inside a pydantic ``model_validator``:
    pydantic turns it into a validation error, which each side's settings loader reports in
    its own error class with the field's name.

    Raises:
        ValueError: both the secret and its file are set, or the file cannot be read; the
            message names the field and the file, never the content.
    """
    filled = dict(data)
    for field in fields:
        path = filled.get(f"{field}_file")
        if not path:
            continue
        if filled.get(field):
            raise ValueError(f"{field} and {field}_file are both set; keep one")
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {field}_file {path}: "
                             f"{getattr(exc, 'strerror', None) or type(exc).__name__}") from None
        filled[field] = text.removesuffix("\n").removesuffix("\r")
    return filled

"""JSON-schema problems phrased for the sender of a webhook, without echoing its data.

Both webhook receivers (the inbound status endpoint and the reference CRM) answer a body that
breaks its schema with 400 and every problem listed, and log the same text. The bodies carry
customer data, so the wording names where the problem is and which rule it breaks, never the
offending value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

_NAMES_KEYS_ONLY: Final = frozenset({"required", "additionalProperties", "dependentRequired"})
_PHRASES: Final = {"enum": "must be one of {}", "type": "must be of type {}",
                   "const": "must be {}", "pattern": "must match {}", "format": "must be a {}",
                   "minimum": "must be at least {}", "maximum": "must be at most {}",
                   "minLength": "must be at least {} characters",
                   "maxLength": "must be at most {} characters"}


def schema_problems(errors: Iterable[Any], limit: int = 20) -> str:
    """JSON-schema errors as ``path: what is wrong``, without quoting the offending values.

    jsonschema's own messages quote the value (``'Ada Lovelace' is not of type 'integer'``);
    these bodies carry customer data, and the answer is logged and returned to the sender,
    so only the path and the rule broken are shown (the keys of ``required`` and
    ``additionalProperties`` are the schema's or the sender's field names, not data).
    """
    ordered = sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    parts = []
    for error in ordered[:limit]:
        where = "/".join(map(str, error.absolute_path)) or "(body)"
        rule = json.dumps(error.validator_value, default=str)
        if error.validator in _NAMES_KEYS_ONLY:
            what = error.message
        elif error.validator in _PHRASES:
            what = _PHRASES[error.validator].format(rule)
        else:
            what = f"breaks {error.validator!s} {rule}"
        parts.append(f"{where}: {what}")
    return "; ".join(parts)

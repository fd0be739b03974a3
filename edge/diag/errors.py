"""The one error type every diagnostic parser raises.

Answers come from ECUs, adapters and logs we do not control; a parser that meets bytes it
cannot read raises ``DiagParseError`` with what it expected, and nothing else, so callers
(taps, the CLI) can count or report it without catching arbitrary exceptions.
"""

from __future__ import annotations

from edge.errors import EdgeError, TerminalEdgeError, TransientEdgeError


class DiagParseError(TerminalEdgeError):
    """A diagnostic answer is malformed; the message says what was expected."""


class DiagLinkError(TransientEdgeError):
    """An adapter or ECU did not answer (no connection, timeout); retrying may help."""


__all__ = ["DiagLinkError", "DiagParseError", "EdgeError"]

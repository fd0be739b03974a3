"""The edge package's error hierarchy.

Expected data faults on a bus (unknown ids, out-of-range values) are counted, not raised;
these errors are for things a person has to fix (bad configuration, broken DBC, unusable spool).
"""


class EdgeError(Exception):
    """Root of every error raised by the edge package."""


class TransientEdgeError(EdgeError):
    """Worth retrying: the condition may clear by itself (broker down, bus busy)."""


class BrokerUnreachableError(TransientEdgeError):
    """A command that needs the broker now (a replay, a simulation) could not connect to it;
    the message names the broker and the reason of the last attempt."""


class TerminalEdgeError(EdgeError):
    """Retrying will not help: fix the input or configuration first."""


class ConfigError(TerminalEdgeError):
    """The agent's configuration is invalid; the message says which key and why."""


class DbcError(TerminalEdgeError):
    """A DBC file could not be loaded; the message names the file and the parser's complaint."""


class ContractError(TerminalEdgeError):
    """A payload does not follow the wire contract (wrong schema version, missing field)."""


class SpoolError(TerminalEdgeError):
    """The on-disk spool cannot be used (unwritable directory, corrupt entry)."""


class ReferenceDataError(TerminalEdgeError):
    """The reference data edge ships (DBC, rules, UDS maps) is missing: a broken install."""


class FleetCapacityError(TerminalEdgeError):
    """A simulated fleet does not fit the processes asked for: their vehicles would need file
    descriptors numbered past what paho's ``select()`` can watch (1,024)."""


class FleetProcessError(EdgeError):
    """An agent process of a simulated fleet failed without saying why in a known error (it
    crashed or was killed); the message names its vehicles and its exit status."""

"""Collection rules: which DBC signals become which published signal names.

A rules file (TOML) maps DBC signals to COVESA VSS paths, with an optional linear unit
conversion, and names the DBC message that carries fault codes. Signals no rule names are
published under their raw name ``<Message>.<Signal>``, so nothing decoded is lost for want of
a mapping. The mapping is compiled once per message so the hot path is two dict lookups.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SignalRule:
    """One DBC signal mapped to its published name: ``out = dbc_value * scale + offset``."""

    message: str
    signal: str
    name: str
    scale: float = 1.0
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class DtcRule:
    """The DBC message whose frames report fault codes, and its signal names."""

    message: str
    code_signal: str
    status_signal: str
    ecu_signal: str | None = None


DTC_STATUS_BY_VALUE = {0: "pending", 1: "stored", 2: "permanent"}
"""``DtcStatus`` raw values in our DBCs, mapped to the contract's status names."""


@dataclass(frozen=True)
class RuleSet:
    """All collection rules of one agent."""

    vss_version: str
    signals: tuple[SignalRule, ...]
    dtc: DtcRule | None

    def compile(self) -> dict[str, dict[str, tuple[str, float, float]]]:
        """message -> DBC signal -> (published name, scale, offset), for the hot path."""
        table: dict[str, dict[str, tuple[str, float, float]]] = {}
        for rule in self.signals:
            table.setdefault(rule.message, {})[rule.signal] = (rule.name, rule.scale, rule.offset)
        return table


def load_rules(path: str | Path) -> RuleSet:
    """Read a rules TOML file.

    Raises:
        ConfigError: the file is missing, not TOML, or a rule lacks ``dbc``/``vss``.
    """
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"rules file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"rules file {path} is not valid TOML: {exc}") from exc
    signals = tuple(_signal_rule(path, i, raw) for i, raw in enumerate(doc.get("signal", [])))
    dtc = _dtc_rule(path, doc["dtc"]) if "dtc" in doc else None
    return RuleSet(str(doc.get("vss_version", "")), signals, dtc)


def _signal_rule(path: str | Path, index: int, raw: dict[str, Any]) -> SignalRule:
    dbc, vss = raw.get("dbc"), raw.get("vss")
    if not isinstance(dbc, str) or dbc.count(".") != 1 or not isinstance(vss, str):
        raise ConfigError(
            f"{path}: signal rule #{index + 1} needs dbc = \"<Message>.<Signal>\" and vss = "
            f"\"<VSS path>\" (got dbc={dbc!r}, vss={vss!r})"
        )
    message, signal = dbc.split(".")
    return SignalRule(message, signal, vss, float(raw.get("scale", 1.0)),
                      float(raw.get("offset", 0.0)))


def _dtc_rule(path: str | Path, raw: dict[str, Any]) -> DtcRule:
    try:
        return DtcRule(str(raw["message"]), str(raw["code_signal"]), str(raw["status_signal"]),
                       raw.get("ecu_signal"))
    except KeyError as exc:
        raise ConfigError(f"{path}: [dtc] needs message, code_signal and status_signal") from exc


def j2012_code(raw: int) -> str:
    """Format a two-byte OBD-II fault code as upper-case SAE J2012 text (0x0A80 -> 'P0A80').

    The top two bits pick the system letter (P, C, B, U), the next two the first digit, and
    the remaining twelve bits are three hexadecimal digits.
    """
    letter = "PCBU"[(raw >> 14) & 0x3]
    return f"{letter}{(raw >> 12) & 0x3}{raw & 0xFFF:03X}"

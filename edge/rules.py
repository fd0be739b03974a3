"""Collection rules: which DBC signals become which published signal names, and how often.

A rules file (TOML) maps DBC signals to COVESA VSS paths (the file states the VSS version),
with an optional linear unit conversion, and a collection mode per signal (``every`` sample,
a fixed ``window`` with min/max/mean/last, or ``on_change`` with deadbands and a maximum
silence; see :mod:`edge.collect`). It names the DBC message that carries fault codes and,
optionally, the signals cranking detection watches: each a DBC signal (``<Message>.<Signal>``)
or a published name (a VSS path a ``[[signal]]`` rule or a diagnostic tap publishes), so a
profile can feed the crank detector from any bus whose 12 V voltage and engine speed it maps,
OBD-II PIDs included.

With ``publish_unmapped = true`` (the default) signals no rule names are published under their
raw name ``<Message>.<Signal>``, so nothing decoded is lost for want of a mapping. With
``false`` only the messages the rules need are decoded, and the CAN filter derived from them
keeps every other id out of Python (in the kernel, on SocketCAN). The mapping is compiled once
per message so the hot path is two dict lookups.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.collect import Collector, OnChangeCollector, WindowCollector
from edge.cranking import CrankRule
from edge.errors import ConfigError

MODES = ("every", "window", "on_change")


@dataclass(frozen=True, slots=True)
class SignalRule:
    """One DBC signal mapped to its published name: ``out = dbc_value * scale + offset``."""

    message: str
    signal: str
    name: str
    scale: float = 1.0
    offset: float = 0.0
    mode: str = "every"
    window_s: float = 1.0
    deadband_abs: float = 0.0
    deadband_rel: float = 0.0
    max_silence_s: float | None = None

    def collector(self) -> Collector | None:
        """A fresh collector for this rule's mode; None for ``every`` (the fast path)."""
        if self.mode == "window":
            return WindowCollector(self.name, self.window_s)
        if self.mode == "on_change":
            return OnChangeCollector(self.name, deadband_abs=self.deadband_abs,
                                     deadband_rel=self.deadband_rel,
                                     max_silence_s=self.max_silence_s)
        return None


Compiled = dict[str, dict[str, tuple[str, float, float, Collector | None]]]
"""message -> DBC signal -> (published name, scale, offset, collector or None)."""


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
    publish_unmapped: bool = True
    cranking: CrankRule | None = None

    def compile(self) -> Compiled:
        """The hot path's table, with fresh collectors (one set per agent)."""
        table: Compiled = {}
        for rule in self.signals:
            table.setdefault(rule.message, {})[rule.signal] = (
                rule.name, rule.scale, rule.offset, rule.collector())
        return table

    def crank_messages(self) -> set[str]:
        """DBC messages carrying a signal cranking detection watches (by either name)."""
        if self.cranking is None:
            return set()
        watched = {self.cranking.voltage, self.cranking.engine_speed}
        published = {rule.name: rule.message for rule in self.signals if rule.name in watched}
        return {published.get(name, name.split(".")[0]) for name in watched
                if name in published or name.count(".") == 1}

    def needed_messages(self) -> set[str] | None:
        """DBC messages the rules need, or None when every message is (``publish_unmapped``)."""
        if self.publish_unmapped:
            return None
        needed = {rule.message for rule in self.signals}
        if self.dtc is not None:
            needed.add(self.dtc.message)
        return needed | self.crank_messages()


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
    cranking = _crank_rule(path, doc["cranking"]) if "cranking" in doc else None
    unmapped = doc.get("publish_unmapped", True)
    if not isinstance(unmapped, bool):
        raise ConfigError(f"{path}: publish_unmapped must be true or false, got {unmapped!r}")
    return RuleSet(str(doc.get("vss_version", "")), signals, dtc, unmapped, cranking)


def _signal_rule(path: str | Path, index: int, raw: dict[str, Any]) -> SignalRule:
    dbc, vss = raw.get("dbc"), raw.get("vss", raw.get("dbc"))
    where = f"{path}: signal rule #{index + 1} ({dbc})"
    if not isinstance(dbc, str) or dbc.count(".") != 1 or not isinstance(vss, str):
        raise ConfigError(
            f"{path}: signal rule #{index + 1} needs dbc = \"<Message>.<Signal>\" and vss = "
            f"\"<VSS path>\" (got dbc={dbc!r}, vss={vss!r})"
        )
    mode = raw.get("mode", "every")
    if mode not in MODES:
        raise ConfigError(f"{where}: mode must be one of {', '.join(MODES)}, got {mode!r}")
    message, signal = dbc.split(".")
    try:
        rule = SignalRule(message, signal, vss, float(raw.get("scale", 1.0)),
                          float(raw.get("offset", 0.0)), mode, float(raw.get("window_s", 1.0)),
                          float(raw.get("deadband_abs", 0.0)), float(raw.get("deadband_rel", 0.0)),
                          _opt_float(raw.get("max_silence_s")))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: numbers expected for scale, offset, window_s, "
                          f"deadband_abs, deadband_rel, max_silence_s ({exc})") from exc
    if rule.window_s <= 0 or rule.deadband_abs < 0 or rule.deadband_rel < 0:
        raise ConfigError(f"{where}: window_s must be > 0 and deadbands >= 0")
    return rule


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _crank_rule(path: str | Path, raw: dict[str, Any]) -> CrankRule:
    try:
        rule = CrankRule(str(raw["voltage"]), str(raw["engine_speed"]),
                         float(raw.get("crank_rpm", 50.0)), float(raw.get("running_rpm", 400.0)),
                         float(raw.get("pre_s", 0.5)))
    except KeyError as exc:
        raise ConfigError(f"{path}: [cranking] needs voltage and engine_speed "
                          "(\"<Message>.<Signal>\" or a published name)") from exc
    if "." not in rule.voltage or "." not in rule.engine_speed:
        raise ConfigError(f"{path}: [cranking] voltage and engine_speed are "
                          "\"<Message>.<Signal>\" or a published name such as "
                          "\"Vehicle.LowVoltageBattery.CurrentVoltage\"")
    return rule


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

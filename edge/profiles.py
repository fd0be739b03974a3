"""Signal profiles: which DBC files, taps and collection rules read one vehicle model's bus.

A real fleet mixes models, and each model's bus names the same quantity differently (the
Kona's cluster odometer ``CLU12.CF_Clu_Odometer``, a truck's SPN 917, OBD-II PID 0xA6); the
features read VSS names only. A profile (``dbc/profiles/<name>.toml``, or any folder given
first) says, for the models it lists, which DBC files decode the bus, which diagnostic taps
run beside them and which rules map DBC signals to VSS names, so the register's ``model``
column is all a vehicle needs to be read right.

A profile is a rules file (``[[signal]]``, ``[dtc]``, ``[cranking]``, ``publish_unmapped``,
see :mod:`edge.rules`) with a header: ``models``, ``dbc`` (file names, found on the DBC
search path: the folders given first, then the shipped one), ``taps``, ``description``,
``poll`` (``{pids = [0x42, ...], every_s = 1, dtc_every_s = 60}``: the agent asks the car for
these OBD-II PIDs and its fault codes, where nothing else on the bus does); or,
instead of inline rules, ``rules = "<file>"`` naming a rules file beside it. Third-party DBCs
stay where their licence lets them be: a profile names the file, the operator says where it
is (``--dbc-dir``).

Everything is checked when the profile is applied, before a frame is read: a key the format
does not know, a DBC that is not on the search path, a rule naming a message or signal no
named DBC has, a model listed by two profiles of one folder. Each is one line saying what to
fix.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cantools.database

from edge.config import EdgeSettings
from edge.decode import load_dbcs
from edge.errors import ConfigError, TerminalEdgeError
from edge.reference import profiles_dir, reference_dir
from edge.rules import RuleSet, load_rules

HEADER_KEYS = frozenset({"models", "dbc", "taps", "rules", "description", "poll"})
POLL_KEYS = frozenset({"pids", "every_s", "dtc_every_s"})
"""A profile's own keys; everything else is a rules file's."""
RULES_KEYS = frozenset({"vss_version", "publish_unmapped", "signal", "dtc", "cranking"})
"""The keys of a rules file (:func:`edge.rules.load_rules`), inline in a profile."""


@dataclass(frozen=True, slots=True)
class ObdPoll:
    """What the agent asks the car for over OBD-II, and how often (a profile's ``poll``)."""

    pids: tuple[int, ...]
    every_s: float = 1.0
    dtc_every_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Profile:
    """One profile as written: its DBC names are resolved only when it is applied."""

    name: str
    path: Path
    models: tuple[str, ...]
    dbc: tuple[str, ...]
    taps: tuple[str, ...]
    rules: Path
    """The file holding the rules: the profile itself, or the one its ``rules`` names."""
    description: str = ""
    poll: ObdPoll | None = None


@dataclass(frozen=True, slots=True)
class ResolvedProfile:
    """A profile with its DBC files found and every rule checked against them."""

    profile: Profile
    dbc: tuple[Path, ...]
    rules: RuleSet


def model_key(model: str) -> str:
    """How model names compare: case and runs of blanks do not matter."""
    return " ".join(model.split()).casefold()


def load_profile(path: Path) -> Profile:
    """Read one profile file (its rules are loaded too, to fail on a bad one now).

    Raises:
        ConfigError: the file is missing, not TOML, has an unknown key or a bad value.
    """
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"signal profile {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"signal profile {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - HEADER_KEYS - RULES_KEYS)
    if unknown:
        raise ConfigError(f"signal profile {path}: unknown key {', '.join(unknown)} (a profile "
                          f"has {', '.join(sorted(HEADER_KEYS | RULES_KEYS))})")
    rules = path
    if "rules" in doc:
        inline = sorted(set(doc) & RULES_KEYS)
        if inline:
            raise ConfigError(f"signal profile {path}: give the rules inline or as rules = "
                              f"\"<file>\", not both (inline: {', '.join(inline)})")
        rules = _rules_file(path, _text(path, "rules", doc["rules"]))
    load_rules(rules)
    return Profile(path.stem, path, _texts(path, "models", doc.get("models", [])),
                   _texts(path, "dbc", doc.get("dbc", [])),
                   _texts(path, "taps", doc.get("taps", [])), rules,
                   _text(path, "description", doc.get("description", "")),
                   _poll(path, doc["poll"], doc.get("taps", [])) if "poll" in doc else None)


def _poll(path: Path, raw: Any, taps: Any) -> ObdPoll:
    """A profile's ``poll`` table, checked (PIDs 1-255, positive intervals, the obd tap on)."""
    where = f"signal profile {path}: poll"
    if not isinstance(raw, dict) or set(raw) - POLL_KEYS or "pids" not in raw:
        raise ConfigError(f"{where} must be {{pids = [0x42, ...], every_s = 1, "
                          f"dtc_every_s = 60}} (keys: {', '.join(sorted(POLL_KEYS))}), got {raw!r}")
    pids = raw["pids"]
    if not isinstance(pids, list) or not pids or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 < p <= 0xFF for p in pids):
        raise ConfigError(f"{where}.pids must be a list of mode 01 PIDs (1 to 0xFF), "
                          f"got {pids!r}")
    every, dtc = raw.get("every_s", 1.0), raw.get("dtc_every_s", 60.0)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0
               for v in (every, dtc)):
        raise ConfigError(f"{where}: every_s and dtc_every_s must be seconds > 0, "
                          f"got {every!r} and {dtc!r}")
    if "obd" not in (taps if isinstance(taps, list) else [taps]):
        raise ConfigError(f"{where} needs the obd tap (taps = [\"obd\"]): the tap hears the "
                          "answers the agent asks for")
    return ObdPoll(tuple(pids), float(every), float(dtc))


def _text(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"signal profile {path}: {key} must be a string, got {value!r}")
    return value


def _texts(path: Path, key: str, value: Any) -> tuple[str, ...]:
    """A list of non-empty strings (a single string counts as a list of one)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip()
                                               for v in values):
        raise ConfigError(f"signal profile {path}: {key} must be a list of names, "
                          f"got {value!r}")
    return tuple(v.strip() for v in values)


def _rules_file(profile: Path, name: str) -> Path:
    """A profile's ``rules`` file: beside the profile, else among the shipped files."""
    for folder in (profile.parent, reference_dir()):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise ConfigError(f"signal profile {profile}: rules file {name} is neither beside it nor "
                      f"shipped in {reference_dir()}")


def search_path(profile_dirs: Sequence[Path] = ()) -> list[Path]:
    """Where profiles are looked for, in order: the folders given, then the shipped one."""
    return [*profile_dirs, profiles_dir()]


def all_profiles(profile_dirs: Sequence[Path] = ()) -> list[Profile]:
    """Every profile on the search path; a name found twice is the first folder's.

    Raises:
        ConfigError: a folder given does not exist, or a profile in it does not load.
    """
    seen: dict[str, Profile] = {}
    for folder in search_path(profile_dirs):
        if not folder.is_dir():
            raise ConfigError(f"profile folder {folder} does not exist")
        for path in sorted(folder.glob("*.toml")):
            if path.stem not in seen:
                seen[path.stem] = load_profile(path)
    return list(seen.values())


def find_profile(name: str, profile_dirs: Sequence[Path] = ()) -> Profile:
    """The profile called ``name`` (``dbc/profiles/<name>.toml``), or the file ``name`` names.

    Raises:
        ConfigError: no such profile (the message lists those there are), or it does not load.
    """
    if name.endswith(".toml") or "/" in name:
        return load_profile(Path(name))
    for folder in search_path(profile_dirs):
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            return load_profile(candidate)
    known = sorted({p.stem for folder in search_path(profile_dirs) if folder.is_dir()
                    for p in folder.glob("*.toml")})
    raise ConfigError(f"no signal profile named {name!r} in "
                      f"{', '.join(map(str, search_path(profile_dirs)))} "
                      f"(there are: {', '.join(known) or 'none'})")


def profile_for_model(model: str, profile_dirs: Sequence[Path] = ()) -> Profile:
    """The profile whose ``models`` lists ``model``; the first folder claiming it wins.

    Raises:
        ConfigError: no profile lists the model, or two profiles of one folder do.
    """
    key = model_key(model)
    for folder in search_path(profile_dirs):
        claims = [p for p in all_profiles_in(folder) if key in map(model_key, p.models)]
        if len(claims) > 1:
            raise ConfigError(f"vehicle model {model!r} is listed by more than one profile in "
                              f"{folder}: {', '.join(p.name for p in claims)}; keep it in one")
        if claims:
            return claims[0]
    known = sorted({m for p in all_profiles(profile_dirs) for m in p.models})
    raise ConfigError(f"no signal profile lists vehicle model {model!r} (profiles list: "
                      f"{', '.join(known) or 'none'}); add it to a profile's models in a "
                      "--profile-dir folder, or name the profile with --profile")


def all_profiles_in(folder: Path) -> list[Profile]:
    """The profiles of one folder (none if it does not exist)."""
    return [load_profile(p) for p in sorted(folder.glob("*.toml"))] if folder.is_dir() else []


def find_dbc(profile: Profile, name: str, dbc_dirs: Sequence[Path] = ()) -> Path:
    """A DBC file a profile names: an absolute path as it is, else the first on the path.

    Raises:
        ConfigError: not found; the message names the profile and where it looked.
    """
    if Path(name).is_absolute():
        if Path(name).is_file():
            return Path(name)
        raise ConfigError(f"signal profile {profile.name}: DBC file {name} does not exist")
    folders = [*dbc_dirs, reference_dir()]
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    raise ConfigError(f"signal profile {profile.name} needs DBC file {name}, which is not in "
                      f"{', '.join(map(str, folders))}; give its folder with --dbc-dir")


def resolve(profile: Profile, dbc_dirs: Sequence[Path] = ()) -> ResolvedProfile:
    """Find the profile's DBC files and check every rule names a signal they define.

    Raises:
        ConfigError: a DBC is missing, or a rule names a message or signal none of them has.
        DbcError: a DBC does not load.
    """
    paths = tuple(find_dbc(profile, name, dbc_dirs) for name in profile.dbc)
    rules = load_rules(profile.rules)
    check_rules(profile, rules, load_dbcs(paths, lenient_fallback=True))
    return ResolvedProfile(profile, paths, rules)


def check_rules(profile: Profile, rules: RuleSet,
                databases: Sequence[cantools.database.can.Database]) -> None:
    """Every ``<Message>.<Signal>`` the rules name exists in one of the databases; a name
    cranking detection watches is such a signal, a name a ``[[signal]]`` rule publishes, or,
    in a profile with taps, a name a tap may publish (an OBD-II PID's VSS path: the taps are
    checked when the agent starts them).

    Raises:
        ConfigError: the ones that do not, in one line.
    """
    signals: dict[str, set[str]] = {}
    for db in databases:
        for message in db.messages:
            signals.setdefault(message.name, set()).update(s.name for s in message.signals)
    named = [(r.message, r.signal) for r in rules.signals]
    if rules.dtc is not None:
        named += [(rules.dtc.message, s) for s in (rules.dtc.code_signal,
                                                    rules.dtc.status_signal,
                                                    rules.dtc.ecu_signal) if s]
    published = {r.name for r in rules.signals}
    if rules.cranking is not None:
        for full in (rules.cranking.voltage, rules.cranking.engine_speed):
            message_name, _, signal_name = full.partition(".")
            if signal_name in signals.get(message_name, ()) or full in published:
                continue
            if not profile.taps:
                raise ConfigError(
                    f"signal profile {profile.name} ({profile.rules}): [cranking] watches "
                    f"{full}, which no DBC named defines, no [[signal]] rule publishes and "
                    "no tap can (the profile has none)")
    missing = [f"{m}.{s}" for m, s in named if s not in signals.get(m, ())]
    if missing:
        where = ", ".join(profile.dbc) or "no DBC file"
        raise ConfigError(f"signal profile {profile.name} ({profile.rules}) names "
                          f"{', '.join(missing)}, which {where} does not define")


@dataclass(frozen=True, slots=True)
class ProfileReport:
    """One profile on the search path, checked: ``error`` is empty when it resolves."""

    name: str
    path: str
    models: tuple[str, ...]
    dbc: tuple[str, ...]
    """The DBC files found, or as named where the check failed."""
    taps: tuple[str, ...]
    error: str = ""


def check_profiles(profile_dirs: Sequence[Path] = (),
                   dbc_dirs: Sequence[Path] = ()) -> list[ProfileReport]:
    """Every profile on the search path (a name found twice: the first folder's), resolved.

    Raises:
        ConfigError: a folder given does not exist, or a profile file does not load.
    """
    return [report_of(profile, dbc_dirs) for profile in all_profiles(profile_dirs)]


def report_of(profile: Profile, dbc_dirs: Sequence[Path] = ()) -> ProfileReport:
    """One profile resolved (:func:`resolve`); never raises for what resolving finds."""
    try:
        resolved = resolve(profile, dbc_dirs)
    except TerminalEdgeError as exc:
        return ProfileReport(profile.name, str(profile.path), profile.models, profile.dbc,
                             profile.taps, str(exc))
    return ProfileReport(profile.name, str(profile.path), profile.models,
                         tuple(map(str, resolved.dbc)), profile.taps)


def register_entry(register: Path, vehicle_id: str) -> tuple[str, str | None]:
    """The vehicle's ``model`` in a register CSV (``vehicles.csv``), and its ``profile``
    column when the register has one and it is filled in.

    Raises:
        ConfigError: the file is missing, lacks the columns, or does not list the vehicle.
    """
    try:
        with register.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or ())
            if not {"vehicle_id", "model"} <= columns:
                raise ConfigError(f"register {register} needs vehicle_id and model columns "
                                  f"(has: {', '.join(sorted(columns)) or 'none'})")
            for row in reader:
                if (row.get("vehicle_id") or "").strip() == vehicle_id:
                    model = (row.get("model") or "").strip()
                    if not model:
                        raise ConfigError(f"register {register}: vehicle {vehicle_id} has no "
                                          "model")
                    return model, (row.get("profile") or "").strip() or None
    except FileNotFoundError as exc:
        raise ConfigError(f"register {register} does not exist") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"register {register} is not a readable CSV file: {exc}") from exc
    raise ConfigError(f"register {register} does not list vehicle {vehicle_id}")


def selected_profile(settings: EdgeSettings) -> Profile | None:
    """The profile the settings pick: ``profile``, else the one listing ``vehicle_model``."""
    if settings.profile is not None:
        return find_profile(settings.profile, settings.profile_dirs)
    if settings.vehicle_model is not None:
        return profile_for_model(settings.vehicle_model, settings.profile_dirs)
    return None


def apply_profile(settings: EdgeSettings) -> EdgeSettings:
    """The settings with the selected profile's DBC files, rules, taps and OBD-II polling
    (explicit taps and poll_pids win).

    The copy picks no profile any more (its ``dbc``, ``rules`` and ``taps`` are the
    profile's), so applying twice is harmless; settings that pick none come back as they are.

    Raises:
        ConfigError: ``dbc`` or ``rules`` set beside a profile, or the profile does not
            resolve (see :func:`resolve`).
        DbcError: a DBC the profile names does not load.
    """
    profile = selected_profile(settings)
    if profile is None:
        return settings
    clash = sorted({"dbc", "rules"} & settings.model_fields_set)
    if clash:
        raise ConfigError(f"signal profile {profile.name} sets the DBC files and rules; drop "
                          f"{' and '.join(clash)} (or the profile)")
    resolved = resolve(profile, settings.dbc_dirs)
    update: dict[str, Any] = {"dbc": list(resolved.dbc), "rules": profile.rules,
                              "profile": None, "vehicle_model": None}
    if "taps" not in settings.model_fields_set:
        update["taps"] = list(profile.taps)
    if profile.poll is not None and "poll_pids" not in settings.model_fields_set:
        update.update(poll_pids=list(profile.poll.pids), poll_every_s=profile.poll.every_s,
                      poll_dtc_every_s=profile.poll.dtc_every_s)
    return settings.model_copy(update=update)

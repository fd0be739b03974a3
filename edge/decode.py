"""Decoding CAN frames with one or more DBC files.

All the work is done once, at load time: every DBC is parsed, and one dict maps each frame id
to its cantools message. At the first frame of an id, a plain message (integer signals, no
multiplexing) gets decoding code generated and compiled (see :func:`plan_message`), so a frame
is a dict lookup plus a few integer operations; other messages use cantools' own unpack.
A real bus always carries frames the DBCs do not describe; those are counted per id, never
raised. A decoded value outside its signal's DBC range, or carrying the all-bits-set "not
available" pattern (unsigned signals of 4 bits or more, unless the DBC's value table names that
raw value), is counted as invalid and left out, so it is never published as data.

J1939 messages (a DBC with ``ProtocolType "J1939"``) are matched by parameter group number,
whatever the source address in the frame id's low byte; for PDU1 groups (PF < 240) the
destination byte is masked too. 11- and 29-bit ids are told apart, using the DBC convention
that bit 31 marks an extended id. CAN FD frames and multiplexed messages decode like any other
(cantools picks the multiplexed signals).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cantools
import cantools.database

from edge.errors import DbcError

log = logging.getLogger(__name__)

CAN_EFF_FLAG = 0x80000000
"""Bit 31: how DBC files mark a 29-bit (extended) frame id."""


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    """The valid signals of one frame, by DBC signal name, in physical units."""

    message: str
    signals: dict[str, float]


@dataclass
class DecodeCounters:
    """What the decoder saw; every frame lands in exactly one of the first four buckets."""

    decoded: int = 0
    unknown: int = 0
    malformed: int = 0
    filtered: int = 0
    invalid_signals: int = 0
    unknown_ids: Counter[int] = field(default_factory=Counter)
    malformed_ids: Counter[int] = field(default_factory=Counter)


def load_dbcs(
    paths: Sequence[str | Path], *, strict: bool = True, lenient_fallback: bool = False
) -> list[cantools.database.Database]:
    """Load DBC files, wrapping parser failures into a :class:`DbcError` naming the file.

    With ``lenient_fallback`` a file that fails the strict checks (overlapping signals, a
    signal outside its message) is loaded leniently, with a warning; syntax errors still fail.
    """
    databases = []
    for path in paths:
        try:
            db = _load_one(path, strict)
        except DbcError as exc:
            if not (strict and lenient_fallback):
                raise
            db = _load_one(path, False)
            log.warning("%s; loaded without strict checks", exc)
        databases.append(db)
    return databases


class Decoder:
    """Turns raw frames into named physical values using any number of DBCs.

    Args:
        databases: loaded cantools databases; on a frame id defined twice, the first wins.
        frame_ids: when given, only these ids are decoded (the rest count as unknown).
        only_messages: when given, frames of other known messages are counted as filtered and
            not decoded (the collection rules need nothing from them).
        compiled: decode plain messages with generated code (:func:`plan_message`) instead of
            cantools; the results are the same, False exists to compare the two.
    """

    def __init__(
        self,
        databases: Sequence[cantools.database.Database],
        frame_ids: set[int] | None = None,
        only_messages: set[str] | None = None,
        *,
        compiled: bool = True,
    ) -> None:
        self._messages: dict[int, cantools.database.can.Message] = {}
        self._by_pgn: dict[int, cantools.database.can.Message] = {}
        self._checks: dict[str, dict[str, _Check]] = {}
        self._only = only_messages
        self._entries: dict[int, _Entry] = {}
        self._compiled = compiled
        self._plans: dict[str, MessagePlan | None] = {}
        for db in databases:
            for message in db.messages:
                key = _frame_key(message.frame_id, message.is_extended_frame)
                if key in self._messages or (frame_ids is not None and key not in frame_ids):
                    continue
                self._messages[key] = message
                self._checks[message.name] = {s.name: _check(s) for s in message.signals}
                if message.protocol == "j1939" and message.is_extended_frame:
                    self._by_pgn.setdefault(j1939_pgn(message.frame_id), message)
        self.counters = DecodeCounters()

    @property
    def messages(self) -> list[cantools.database.can.Message]:
        """Every message this decoder knows, in load order."""
        return list(self._messages.values())

    def is_j1939(self, message: str) -> bool:
        """True when frames of ``message`` are matched by PGN."""
        return any(m.name == message for m in self._by_pgn.values())

    @property
    def frame_ids(self) -> set[int]:
        """Keys (``id | CAN_EFF_FLAG`` for extended ids) this decoder knows."""
        return set(self._messages)

    def can_filters(self, names: set[str]) -> list[dict[str, int | bool]]:
        """python-can filters passing only the named messages' frames (J1939: any source).

        On SocketCAN these run in the kernel, so ids nobody needs never reach Python.
        """
        filters: list[dict[str, int | bool]] = []
        for message in self._messages.values():
            if message.name not in names:
                continue
            if self.is_j1939(message.name):
                pdu1 = ((message.frame_id >> 16) & 0xFF) < 240
                mask = 0x3FF0000 if pdu1 else 0x3FFFF00
                filters.append({"can_id": message.frame_id & mask, "can_mask": mask,
                                "extended": True})
            else:
                mask = 0x1FFFFFFF if message.is_extended_frame else 0x7FF
                filters.append({"can_id": message.frame_id, "can_mask": mask,
                                "extended": message.is_extended_frame})
        return filters

    def message_for(self, arbitration_id: int, is_extended: bool) -> str | None:
        """The DBC message name for a frame id, or None when no DBC knows it."""
        message = self._lookup(_frame_key(arbitration_id, is_extended), is_extended)
        return message.name if message else None

    def decode(self, arbitration_id: int, is_extended: bool, data: bytes) -> DecodedFrame | None:
        """Decode one frame; None (and a counter) for unknown, filtered and malformed frames."""
        key = ((arbitration_id & 0x1FFFFFFF) | CAN_EFF_FLAG) if is_extended else arbitration_id
        entry = self._entries.get(key) or self._entry(key, is_extended)
        counters = self.counters
        if entry is None:
            counters.unknown += 1
            counters.unknown_ids[key] += 1
            return None
        message, name, checks, fast = entry
        if self._only is not None and name not in self._only:
            counters.filtered += 1
            return None
        if fast is not None:
            fast_signals = fast(data)
            if fast_signals is not None:
                counters.decoded += 1
                return DecodedFrame(name, fast_signals)
        try:
            raw = message.decode_simple(data, decode_choices=False)
        except Exception:  # cantools raises DecodeError, ValueError or struct errors
            counters.malformed += 1
            counters.malformed_ids[key] += 1
            return None
        counters.decoded += 1
        signals: dict[str, float] = {}
        for signal, value in raw.items():
            low, high, not_available = checks[signal]
            number = float(value)  # type: ignore[arg-type]
            if low <= number <= high and number != not_available:
                signals[signal] = number
            else:
                counters.invalid_signals += 1
        return DecodedFrame(name, signals)

    def _entry(self, key: int, is_extended: bool) -> _Entry | None:
        message = self._lookup(key, is_extended)
        if message is None:
            return None
        plan = self.plan(message)
        fast = _plan_decoder(plan, self.counters) if plan is not None else None
        entry = (message, message.name, self._checks[message.name], fast)
        self._entries[key] = entry  # a J1939 id from a new source address: found once
        return entry

    def plan(self, message: cantools.database.can.Message) -> MessagePlan | None:
        """The compiled-decoding plan of one of this decoder's messages (None: cantools)."""
        if not self._compiled:
            return None
        if message.name not in self._plans:
            self._plans[message.name] = plan_message(message)
        return self._plans[message.name]

    def lookup(self, key: int) -> tuple[cantools.database.can.Message, bool] | None:
        """The message of a frame key and whether it is decoded (False: filtered); None: unknown."""
        message = self._lookup(key, bool(key & CAN_EFF_FLAG))
        if message is None:
            return None
        return message, self._only is None or message.name in self._only

    def _lookup(self, key: int, is_extended: bool) -> cantools.database.can.Message | None:
        message = self._messages.get(key)
        if message is None and is_extended and self._by_pgn:
            message = self._by_pgn.get(j1939_pgn(key))
        return message


_Check = tuple[float, float, float]
"""A signal's DBC minimum, maximum (±inf when unset) and its "not available" value (NaN: none)."""
_Entry = tuple[cantools.database.can.Message, str, dict[str, _Check],
               Callable[[bytes], dict[str, float] | None] | None]


def _check(signal: cantools.database.can.Signal) -> _Check:
    """Precompute what makes a decoded value of ``signal`` invalid."""
    all_ones = (1 << signal.length) - 1
    not_available = math.nan
    if (not signal.is_signed and signal.length >= 4 and not signal.is_multiplexer
            and all_ones not in (signal.choices or {})):
        scaled = signal.conversion.raw_to_scaled(all_ones, decode_choices=False)
        not_available = float(scaled)  # type: ignore[arg-type]
    low = -math.inf if signal.minimum is None else float(signal.minimum)
    high = math.inf if signal.maximum is None else float(signal.maximum)
    return low, high, not_available


def j1939_pgn(frame_id: int) -> int:
    """The parameter group number of a 29-bit J1939 id (destination masked for PDU1)."""
    pgn = (frame_id >> 8) & 0x3FFFF
    if ((pgn >> 8) & 0xFF) < 240:
        pgn &= 0x3FF00
    return pgn


def _load_one(path: str | Path, strict: bool) -> cantools.database.can.Database:
    try:
        db = cantools.database.load_file(str(path), database_format="dbc", strict=strict)
    except FileNotFoundError as exc:
        raise DbcError(f"DBC file {path} does not exist") from exc
    except Exception as exc:  # cantools raises several unrelated types on bad input
        raise DbcError(f"DBC file {path} does not load: {exc}") from exc
    if not isinstance(db, cantools.database.can.Database):
        raise DbcError(f"{path} is not a CAN database")
    return db


def _frame_key(arbitration_id: int, is_extended: bool) -> int:
    """One integer per frame id, distinguishing 11-bit 0x100 from 29-bit 0x100."""
    return (arbitration_id & 0x1FFFFFFF) | CAN_EFF_FLAG if is_extended else arbitration_id


# --- Compiled decoding -------------------------------------------------------------------
#
# cantools decodes a frame through bitstruct into a dict, then scales each value with a method
# call; at a full bus that is most of an agent's time. For a message that is a plain list of
# integer signals (no multiplexing, no floats, no container, no overlapping bits) the same
# result is a few integer operations on the payload read as one integer, so such messages get
# Python source generated once, at the first frame of their id, and compiled. Everything else
# keeps cantools. The generated code repeats cantools' arithmetic exactly (same operations,
# same int/float constants, in the same order), and the tests hold it to identical results on
# every DBC we have, over random payloads.


@dataclass(frozen=True, slots=True)
class SignalCode:
    """One signal of a :class:`MessagePlan` as Python source.

    ``value`` computes the signal's physical value, a float exactly equal to
    ``float(cantools' decoded value)``, from the payload integers ``le`` (little-endian) and
    ``be`` (big-endian); ``valid(var)`` is the condition under which the value held in the
    variable ``var`` is published (inside the DBC range and not the not-available pattern).
    """

    name: str
    value: str
    bounds: tuple[float, float, float]
    word: str
    """``le`` or ``be``: which payload integer ``value`` reads."""

    def valid(self, var: str) -> str:
        """The validity condition on ``var`` as source (``True`` when nothing can fail)."""
        low, high, not_available = self.bounds
        terms = []
        if low != -math.inf and high != math.inf:
            terms.append(f"{low!r} <= {var} <= {high!r}")
        elif low != -math.inf:
            terms.append(f"{low!r} <= {var}")
        elif high != math.inf:
            terms.append(f"{var} <= {high!r}")
        if low <= not_available <= high:  # outside the range (or NaN) the range rules it out
            terms.append(f"{var} != {not_available!r}")
        return " and ".join(terms) or "True"


@dataclass(frozen=True, slots=True)
class MessagePlan:
    """A message cantools need not decode: its length and its signals, in cantools' order.

    For a multiplexed message (one multiplexer, no nested ones), ``signals`` are those decoded
    whatever the multiplexer says, ``mux`` is the source of the multiplexer's number (cantools'
    ``int(scaled value)``) and ``branches`` the signals each number adds; a number with no
    branch makes the frame malformed, as cantools says.
    """

    name: str
    length: int
    signals: tuple[SignalCode, ...]
    mux: str | None = None
    branches: tuple[tuple[int, tuple[SignalCode, ...]], ...] = ()

    def groups(self) -> list[tuple[str | None, tuple[SignalCode, ...]]]:
        """(condition on ``m``, signals in cantools' order) per way a frame can decode."""
        if self.mux is None:
            return [(None, self.signals)]
        return [(f"m == {number}", self.signals + codes) for number, codes in self.branches]

    def prologue(self, short: str) -> list[str]:
        """Source lines reading the payload into ``le``/``be`` (and the multiplexer into
        ``m``); ``short`` runs on too few bytes.

        Longer payloads are cut to the message length, as cantools does (``allow_excess``).
        """
        n = self.length
        lines = [f"if len(data) != {n}:", f"    if len(data) < {n}:", f"        {short}",
                 f"    data = data[:{n}]"]
        every = self.signals + tuple(c for _, codes in self.branches for c in codes)
        if any(s.word == "le" for s in every) or (self.mux and " le " in self.mux):
            lines.append('le = int.from_bytes(data, "little")')
        if any(s.word == "be" for s in every) or (self.mux and " be " in self.mux):
            lines.append('be = int.from_bytes(data, "big")')
        if self.mux is not None:
            lines.append(f"m = {self.mux}")
        return lines


def plan_message(message: cantools.database.can.Message) -> MessagePlan | None:
    """The compiled-decoding plan of ``message``, or None when only cantools can decode it."""
    codec = getattr(message, "_codecs", None)
    if message.is_container or message.length <= 0 or codec is None:
        return None
    found = _codes(message, codec["signals"], 0)
    if found is None:
        return None
    root, taken = found
    multiplexers = codec["multiplexers"]
    if not multiplexers:
        return MessagePlan(message.name, message.length, root)
    if len(multiplexers) != 1:
        return None
    (mux_name, nodes), = multiplexers.items()
    mux_signal = message.get_signal_by_name(mux_name)
    mux = _value_source(mux_signal, *_place(message, mux_signal), number=True)
    branches = []
    for number, node in nodes.items():
        if node["multiplexers"] or type(number) is not int:
            return None  # nested multiplexing: cantools
        branch = _codes(message, node["signals"], taken)
        if branch is None:
            return None
        branches.append((number, branch[0]))
    if mux is None or mux_name not in {c.name for c in root}:
        return None
    return MessagePlan(message.name, message.length, root, mux, tuple(branches))


def _place(message: cantools.database.can.Message,
           signal: cantools.database.can.Signal) -> tuple[str, int, int]:
    """Which payload integer holds ``signal``, and its shift and length there."""
    if signal.byte_order == "little_endian":
        return "le", signal.start, signal.length
    network = 8 * (signal.start // 8) + (7 - signal.start % 8)
    return "be", 8 * message.length - network - signal.length, signal.length


def _codes(message: cantools.database.can.Message, signals: Sequence[Any],
           taken: int) -> tuple[tuple[SignalCode, ...], int] | None:
    """The code of ``signals`` (bits in ``taken`` already used), or None: cantools only."""
    codes = []
    bits = 8 * message.length
    for signal in signals:
        if signal.length <= 0 or signal.byte_order not in ("little_endian", "big_endian"):
            return None
        var, shift, length = _place(message, signal)
        if shift < 0 or shift + length > bits:
            return None  # outside the message: cantools' layout differs
        used = ((1 << length) - 1) << shift
        if var == "be":  # the same bits numbered little-endian, to compare across byte orders
            used = int.from_bytes(used.to_bytes(message.length, "big"), "little")
        if used & taken:
            return None  # overlapping signals: bitstruct shifts the later ones
        taken |= used
        value = _value_source(signal, var, shift, length)
        bounds = _check(signal)
        low, high, not_available = bounds
        if value is None or not (
                (math.isfinite(low) or low == -math.inf)
                and (math.isfinite(high) or high == math.inf)
                and (math.isfinite(not_available) or math.isnan(not_available))):
            return None  # bounds the source could not spell as literals: cantools
        codes.append(SignalCode(signal.name, value, bounds, var))
    return tuple(codes), taken


def _value_source(signal: cantools.database.can.Signal, var: str, shift: int,
                  length: int, *, number: bool = False) -> str | None:
    """``float(raw * scale + offset)`` for one signal, with cantools' own constants
    (``int(...)`` with ``number``: how cantools reads a multiplexer)."""
    conversion = signal.conversion
    if conversion.is_float:
        return None
    inner = getattr(conversion, "_conversion", conversion)  # value tables wrap a conversion
    raw = f"( {var} >> {shift} )" if shift else f"( {var} )"
    raw = f"( {raw} & {(1 << length) - 1} )"
    if signal.is_signed:
        half = 1 << (length - 1)
        raw = f"( ( {raw} ^ {half} ) - {half} )"
    cast = "int" if number else "float"
    if isinstance(inner, cantools.database.conversion.IdentityConversion):
        return f"{cast}( {raw} )"
    if not isinstance(inner, (cantools.database.conversion.LinearConversion,
                              cantools.database.conversion.LinearIntegerConversion)):
        return None
    scale, offset = inner.scale, inner.offset
    for constant in (scale, offset):
        if type(constant) not in (int, float) or not math.isfinite(constant):
            return None
    if not number and float in (type(scale), type(offset)):
        return f"( {raw} * {scale!r} + {offset!r} )"  # a float already: no float() call
    return f"{cast}( {raw} * {scale!r} + {offset!r} )"


def compile_plan(source: str, name: str, namespace: dict[str, object]) -> Callable[..., Any]:
    """Compile generated source defining function ``name``, with ``namespace`` as its globals.

    Nothing from a DBC or a rules file enters the source except through ``repr()`` of a str,
    int or float (names, constants), so a hostile DBC cannot inject code.
    """
    scope = dict(namespace)
    exec(compile(source, f"<edge.decode {name}>", "exec"), scope)  # our own generated source
    function = scope[name]
    assert callable(function)
    return function


def _plan_decoder(plan: MessagePlan, counters: DecodeCounters) -> Callable[[bytes], Any]:
    """``f(data)``: the valid signals as a dict (invalid ones counted); None when malformed."""
    body = plan.prologue("return None")
    for condition, codes in plan.groups():
        lines = [f"x{i} = {code.value}" for i, code in enumerate(codes)]
        lines.append("out = {}")
        for i, code in enumerate(codes):
            lines += [f"if {code.valid(f'x{i}')}:", f"    out[{code.name!r}] = x{i}", "else:",
                      "    counters.invalid_signals += 1"]
        lines.append("return out")
        body += _guarded(condition, lines)
    body.append("return None")
    source = "def decode(data):\n" + "".join(f"    {line}\n" for line in body)
    return compile_plan(source, "decode", {"counters": counters})


def _guarded(condition: str | None, lines: list[str]) -> list[str]:
    """``lines`` as they are, or indented under ``if condition:``."""
    if condition is None:
        return lines
    return [f"if {condition}:"] + [f"    {line}" for line in lines]


Route = tuple[str, float | None, float] | None
"""Where a compiled sink sends one signal: (published name, scale, offset), scale None for
the value as decoded; None for a signal that is decoded and checked but not published."""


def compile_sink(plan: MessagePlan, routes: Mapping[str, Route], counters: DecodeCounters,
                 columns: tuple[list[float], list[str], list[float]]) -> Callable[..., int]:
    """``sink(ts, data)``: decode a frame of ``plan`` straight into the ``(ts, signal, value)``
    columns of a batch, each valid signal under its route (by signal name), in cantools' order.

    Returns how many valid signals were not published (no route), or -1 (nothing done) when
    the frame is malformed (too short, or a multiplexer number without signals): the caller
    then decodes it the slow way, which counts it. Counts the frame decoded and each invalid
    signal in ``counters``. The columns must be cleared in place, never replaced, for the sink
    to keep writing into the batch.
    """
    body = plan.prologue("return -1")
    for condition, codes in plan.groups():
        body += _guarded(condition, _sink_group(codes, [routes[c.name] for c in codes]))
    body.append("return -1")
    source = "def sink(ts, data):\n" + "".join(f"    {line}\n" for line in body)
    stamps, names, values = columns
    return compile_plan(source, "sink", {
        "counters": counters, "ts_append": stamps.append, "sig_append": names.append,
        "val_append": values.append, "ts_extend": stamps.extend, "sig_extend": names.extend,
        "val_extend": values.extend})


def _sink_group(codes: tuple[SignalCode, ...], routes: list[Route]) -> list[str]:
    """A sink's lines for one way of decoding: one extend per column when every signal is
    valid (the usual case), else signal by signal."""
    body = [f"x{i} = {code.value}" for i, code in enumerate(codes)]
    body.append("counters.decoded += 1")
    valid = [code.valid(f"x{i}") for i, code in enumerate(codes)]
    out = []
    for i, route in enumerate(routes):
        if route is not None:
            name, scale, offset = route
            out.append((name, f"x{i}" if scale is None else f"x{i} * {scale!r} + {offset!r}"))
    dropped = sum(route is None for route in routes)
    checks = [f"({v})" for v in valid if v != "True"]
    body.append(f"if {' and '.join(checks) or 'True'}:")
    if len(out) == 1:
        body += ["    ts_append(ts)", f"    sig_append({out[0][0]!r})",
                 f"    val_append({out[0][1]})"]
    elif out:
        body += [f"    ts_extend(({'ts, ' * len(out)}))",
                 f"    sig_extend({tuple(name for name, _ in out)!r})",
                 f"    val_extend(({''.join(f'{v}, ' for _, v in out)}))"]
    body += [f"    return {dropped}", "n = 0"]
    for i, route in enumerate(routes):
        body.append(f"if {valid[i]}:")
        if route is None:
            body.append("    n += 1")
        else:
            name, scale, offset = route
            value = f"x{i}" if scale is None else f"x{i} * {scale!r} + {offset!r}"
            body += ["    ts_append(ts)", f"    sig_append({name!r})", f"    val_append({value})"]
        body += ["else:", "    counters.invalid_signals += 1"]
    body.append("return n")
    return body



PAYLOAD_MEMO_SIZE = 128
"""Distinct payloads a memoising sink remembers per frame key (:func:`memo_sink`): about
40 kB for a message of eight signals, so a DBC's worth of messages stays well under 1 MB."""

_Memo = tuple[int, tuple[str, ...], tuple[float, ...], int, int]
"""What one payload decodes to: how many samples, their names and values, how many invalid
signals, and the sink's return value (valid signals not published)."""


def memo_sink(plan: MessagePlan, routes: Mapping[str, Route], counters: DecodeCounters,
              columns: tuple[list[float], list[str], list[float]], *,
              demote: Callable[[Callable[..., int]], None],
              size: int = PAYLOAD_MEMO_SIZE) -> Callable[..., int]:
    """:func:`compile_sink`'s sink, remembering what each distinct payload decodes to.

    Many messages repeat their payload frame after frame (a status that has not changed, a
    gear, a door), and decoding a payload again gives the same samples. So each payload is
    decoded once, by a compiled sink of the same plan and routes into a scratch batch, and
    from then on only the remembered names and values are copied into the columns, stamped
    with the frame's time, the frame and its invalid signals counted as decoding counts them.
    The decoding is the compiled sink's own, so the columns, the counters and the return
    value are exactly what :func:`compile_sink`'s sink gives; a payload not remembered is
    decoded afresh, and a malformed one (-1) is never remembered.

    The memory is bounded: at ``size`` distinct payloads it is emptied and starts again. A
    message whose payloads seldom repeat (fewer than ``size`` hits while it filled: a
    counter or a checksum in every frame) stops paying for the memory: ``demote(sink)``
    hands over a plain compiled sink, for the caller to put in this one's place (this one
    keeps working meanwhile).
    """
    scratch: tuple[list[float], list[str], list[float]] = ([], [], [])
    probe_counters = DecodeCounters()
    probe = compile_sink(plan, routes, probe_counters, scratch)
    memo: dict[bytes, _Memo] = {}
    remembered = memo.get
    stamps, names, values = columns
    ts_extend, sig_extend, val_extend = stamps.extend, names.extend, values.extend
    hits = 0

    def learn(data: bytes) -> _Memo | None:
        """Decode a payload not remembered (into the scratch batch); None: malformed."""
        nonlocal hits
        for column in scratch:
            column.clear()
        probe_counters.invalid_signals = 0
        dropped = probe(0.0, data)
        if dropped < 0:
            return None
        if len(memo) >= size:
            if hits < size:
                demote(compile_sink(plan, routes, counters, columns))
            memo.clear()
            hits = 0
        found = memo[data] = (len(scratch[1]), tuple(scratch[1]), tuple(scratch[2]),
                              probe_counters.invalid_signals, dropped)
        return found

    def sink(ts: float, data: bytes) -> int:
        nonlocal hits
        found = remembered(data)
        if found is None:
            found = learn(data)
            if found is None:
                return -1
        else:
            hits += 1
        n, signal_names, signal_values, invalid, dropped = found
        counters.decoded += 1
        if invalid:
            counters.invalid_signals += invalid
        if n:
            ts_extend((ts,) * n)
            sig_extend(signal_names)
            val_extend(signal_values)
        return dropped

    return sink

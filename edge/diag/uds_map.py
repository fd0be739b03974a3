"""Per-make maps of UDS data identifiers (TOML), and decoding answers with them.

A map names the tester's request id and the ECU's answer id, and for each identifier the
signals in its answer: byte offset (the positive response id is byte 0), length, byte order,
signedness, scale and offset, raw values meaning "not available", and optionally a repeat
count and stride for arrays such as cell voltages (``{n}`` in the name is the 1-based index).
Service 0x22 (ReadDataByIdentifier, 2-byte DID) is the UDS default; 0x21 (read by local
identifier, 1 byte) is what some makes, the Nissan Leaf among them, answer instead.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge.diag.errors import DiagParseError
from edge.errors import ConfigError
from edge.reference import uds_map_path


@dataclass(frozen=True, slots=True)
class DidSignal:
    """One value (or array of values) inside an identifier's answer."""

    name: str
    start: int
    length: int
    scale: float = 1.0
    offset: float = 0.0
    signed: bool = False
    little_endian: bool = False
    invalid: tuple[int, ...] = ()
    count: int = 1
    stride: int = 0


@dataclass(frozen=True, slots=True)
class Did:
    """An identifier read with ``service`` (0x22 or 0x21) and the signals in its answer."""

    service: int
    ident: int
    signals: tuple[DidSignal, ...]


@dataclass(frozen=True, slots=True)
class DidMap:
    """A make's identifiers, and the CAN ids its battery ECU is reached on."""

    make: str
    request_id: int
    response_id: int
    extended_id: bool
    dids: dict[tuple[int, int], Did]


def load_did_map(path: str | Path) -> DidMap:
    """Read a DID map; a bare name such as ``nissan_leaf`` means the map edge ships under it
    (``dbc/uds/<name>.toml`` in the repository, see :mod:`edge.reference`).

    Raises:
        ConfigError: the file is missing, not TOML, or an entry lacks a required key.
    """
    file = Path(path)
    if not file.suffix:
        file = uds_map_path(str(path))
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
        dids = [_did(raw) for raw in doc.get("did", [])]
        return DidMap(str(doc["make"]), int(doc["request_id"]), int(doc["response_id"]),
                      bool(doc.get("extended_id", False)),
                      {(d.service + 0x40, d.ident): d for d in dids})
    except FileNotFoundError as exc:
        raise ConfigError(f"UDS map {file} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"UDS map {file} is not valid TOML: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"UDS map {file}: missing or bad key {exc} (see docs/diagnostics.md)"
        ) from exc


def _did(raw: dict[str, Any]) -> Did:
    service = int(raw.get("service", 0x22))
    if service not in (0x21, 0x22):
        raise ValueError("service must be 0x22 or 0x21")
    signals = tuple(
        DidSignal(str(s["name"]), int(s["start"]), int(s["length"]),
                  float(s.get("scale", 1.0)), float(s.get("offset", 0.0)),
                  bool(s.get("signed", False)), s.get("byte_order", "big") == "little",
                  tuple(int(v) for v in s.get("invalid", [])), int(s.get("count", 1)),
                  int(s.get("stride", s["length"])))
        for s in raw["signal"]
    )
    return Did(service, int(raw["id"]), signals)


def parse_uds_answer(payload: bytes, did_map: DidMap) -> list[tuple[str, float]]:
    """Decode a positive 0x62/0x61 answer into ``(name, value)`` pairs; unavailable ones left out.

    Raises:
        DiagParseError: a negative answer, an identifier the map does not know, or an answer
            too short for its signals.
    """
    if len(payload) < 2:
        raise DiagParseError("a UDS answer has a response id and an identifier")
    if payload[0] == 0x7F:
        code = payload[2] if len(payload) > 2 else -1
        raise DiagParseError(f"negative answer to service 0x{payload[1]:02X}: code {code:#04x}")
    size = 3 if payload[0] == 0x62 else 2
    if len(payload) < size:
        raise DiagParseError("a 0x62 answer carries a two-byte identifier")
    ident = int.from_bytes(payload[1:size], "big")
    did = did_map.dids.get((payload[0], ident))
    if did is None:
        raise DiagParseError(f"identifier 0x{ident:X} (answer 0x{payload[0]:02X}) is not in "
                             f"the {did_map.make} map")
    values: list[tuple[str, float]] = []
    for signal in did.signals:
        values += _values(payload, signal)
    return values


def _values(payload: bytes, s: DidSignal) -> list[tuple[str, float]]:
    out = []
    for n in range(s.count):
        start = s.start + n * s.stride
        chunk = payload[start:start + s.length]
        if len(chunk) < s.length:
            raise DiagParseError(f"{s.name}: needs bytes {start}-{start + s.length - 1}, "
                                 f"the answer has {len(payload)}")
        order: Literal["little", "big"] = "little" if s.little_endian else "big"
        if int.from_bytes(chunk, order) in s.invalid:
            continue
        raw = int.from_bytes(chunk, order, signed=s.signed)
        out.append((s.name.format(n=n + 1), raw * s.scale + s.offset))
    return out

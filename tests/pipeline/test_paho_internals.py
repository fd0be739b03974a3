"""The paho internals ingest's fast client stands on, pinned so an upgrade cannot move them quietly.

:class:`pipeline.ingest.client.IngestClient` overrides and calls private members of paho's
``Client`` (see that module's docstring for why). paho may rename or reshape those in any
release without notice; nothing would fail at import time, and the fast client could start
losing speed or, worse, reading packets wrongly. So:

* the installed paho must be exactly the version pyproject.toml pins;
* every member the fast client relies on is listed in :data:`SEAMS` with what it must look
  like, and each row is its own test case: after a paho upgrade, the failing ids name what
  moved and the assertion shows old against new;
* two of paho's behaviours the fast client counts on (reading what a socket reports as
  ``pending()`` without waiting in ``select()``, and writing a queued packet as given) are
  run on a real socket pair.

Upgrading paho: bump the pin, run this file, and for each failure read the paho change and
fix :mod:`pipeline.ingest.client` (or run ingest with ``FLEETCARE_PIPELINE__MQTT_CLIENT=stock``
until it is fixed); then update the row here.
"""

from __future__ import annotations

import enum
import importlib.metadata
import inspect
import re
import socket
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from pipeline.ingest.client import BufferedSocket, IngestClient
from tests.pipeline.test_ingest_client import publish as publish_packet

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@dataclass(frozen=True, slots=True)
class Seam:
    """One paho member the fast client depends on, and the shape it must have."""

    where: Literal["client", "module"]
    """``client``: a fresh ``Client`` instance (its own attributes, then its class);
    ``module``: ``paho.mqtt.client`` itself."""
    member: str
    """The member's name; ``name[key]`` reads one key of a dict attribute."""
    expected: str
    """What :func:`describe` must say: ``method(<parameters>)``, ``absent``, or the value's
    kind (``None``, ``float``, ``lock``, ``int 0``, ``MQTTProtocolVersion.MQTTv311``, a
    function's dotted name)."""
    why: str
    """What the fast client does with it: where to look when the row fails."""


SEAMS: tuple[Seam, ...] = (
    Seam("client", "_create_socket", "method(self)",
         "overridden: wraps the connected socket in a BufferedSocket"),
    Seam("client", "_packet_read", "method(self)",
         "overridden: parses whole PUBLISH packets itself, calls paho's for anything else"),
    Seam("client", "_packet_queue", "method(self, command, packet, mid, qos, info=None)",
         "ack_in_order queues all PUBACKs of a batch as one packet (command, packet, 0, 1)"),
    Seam("client", "_sock_recv", "method(self, bufsize)",
         "paho's own reads go through it to _sock.recv(size), served by BufferedSocket"),
    Seam("client", "_loop", "method(self, timeout=1.0)",
         "asks _sock.pending() before select(): how bytes BufferedSocket holds get read"),
    Seam("client", "_sock", "None",
         "the socket _create_socket returned (None until connect); the fast path reads it"),
    Seam("client", "_in_packet[command]", "int 0",
         "0 while no packet is half read by paho: only then may the fast path parse"),
    Seam("client", "_protocol", "MQTTProtocolVersion.MQTTv311",
         "the constructor's protocol: the fast path parses MQTT 3.1.1 PUBLISH only"),
    Seam("client", "_msgtime_mutex", "lock",
         "held while the fast path updates _last_bytes_received, as paho does"),
    Seam("client", "_last_bytes_received", "float",
         "the keepalive's receive clock: the fast path sets it after each read"),
    Seam("module", "time_func", "time.monotonic",
         "the clock of _last_bytes_received, which the fast path sets from time.monotonic"),
    Seam("client", "on_publish_fast", "absent",
         "IngestClient's own hook: a paho member of that name would be shadowed"),
    Seam("client", "ack_in_order", "absent",
         "IngestClient's own method: a paho member of that name would be shadowed"),
    Seam("client", "on_oversize_fast", "absent",
         "IngestClient's own hook for oversize PUBLISHes: a paho member would be shadowed"),
    Seam("client", "oversize_limit", "absent",
         "IngestClient's own setting: a paho member of that name would be shadowed"),
    Seam("client", "oversize_kept", "absent",
         "IngestClient's own setting: a paho member of that name would be shadowed"),
    Seam("client", "_skip_oversize", "absent",
         "IngestClient's own method (reads an oversize PUBLISH): paho's would be shadowed"),
    Seam("client", "_heard", "absent",
         "IngestClient's own method (sets _last_bytes_received): paho's would be shadowed"),
    Seam("client", "loop_read", "method(self, max_packets=1)",
         "overridden to clear _stopped: paho's calls _packet_read once per message in flight "
         "and returns at its first MQTT_ERR_AGAIN, which ends a read into a full batch"),
    Seam("client", "_stopped", "absent",
         "IngestClient's own flag (the handler said stop): a paho member would be shadowed"),
)

_SUBSCRIPT = re.compile(r"^(?P<name>\w+)\[(?P<key>\w+)\]$")
_ABSENT = object()


def describe(where: str, member: str) -> str:
    """How ``member`` looks in the installed paho, in :attr:`Seam.expected`'s terms."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    found = _SUBSCRIPT.match(member)
    name, key = (found["name"], found["key"]) if found else (member, None)
    if where == "module":
        value: Any = getattr(mqtt, name, _ABSENT)
    else:
        value = vars(client).get(name, inspect.getattr_static(mqtt.Client, name, _ABSENT))
        if inspect.isfunction(value):
            return f"method{_bare_signature(value)}"
    if key is not None and isinstance(value, dict):
        value = value.get(key, _ABSENT)
    return _kind(value)


def _bare_signature(function: Any) -> inspect.Signature:
    """The parameters' names, kinds and defaults; annotations left out (paho retypes often)."""
    parameters = inspect.signature(function).parameters.values()
    return inspect.Signature([p.replace(annotation=inspect.Parameter.empty)
                              for p in parameters])


def _kind(value: Any) -> str:
    if value is _ABSENT:
        return "absent"
    if value is None:
        return "None"
    if inspect.isbuiltin(value) or inspect.isfunction(value):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if type(value) is int:
        return f"int {value}"
    return type(value).__name__


@pytest.mark.parametrize("seam", SEAMS, ids=[s.member for s in SEAMS])
def test_paho_still_has_what_the_fast_client_relies_on(seam: Seam) -> None:
    assert describe(seam.where, seam.member) == seam.expected, (
        f"paho's {seam.member} changed; the fast client relies on it: {seam.why}")


def test_the_installed_paho_is_the_pinned_one() -> None:
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in project.get("optional-dependencies", {}).values()
                      for r in extra)]
    pins = {m[1] for r in requirements
            if (m := re.match(r"^paho[-_.]mqtt\s*==\s*([^\s;,]+)\s*(;.*)?$", r, re.I))}
    assert len(pins) == 1, f"pyproject.toml must pin paho-mqtt exactly once, found {pins}"
    assert importlib.metadata.version("paho-mqtt") == pins.pop(), (
        "the paho installed is not the one pinned: reinstall it, or run this file against "
        "the new one and update SEAMS")


def test_the_table_names_every_private_member_the_fast_client_touches() -> None:
    # A new override or a new self._x in client.py must get a row (and so a check) here.
    source = inspect.getsource(IngestClient)
    used = set(re.findall(r"\bdef (_[a-z]\w*)\(", source))
    used |= set(re.findall(r"\bself\.(_[a-z]\w*)", source))
    assert used <= {s.member.split("[")[0] for s in SEAMS}, used


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    right.setblocking(False)
    yield left, right
    left.close()
    right.close()


def test_paho_reads_what_the_socket_reports_pending_without_waiting_for_it(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    left.sendall(publish_packet("t/a", b"one", qos=0) + publish_packet("t/b", b"two", qos=0))
    sock = BufferedSocket(right)
    assert sock.fill()  # both packets now sit in memory; the real socket has nothing to read
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    got: list[tuple[str, bytes]] = []
    client.on_message = lambda _c, _u, msg: got.append((msg.topic, bytes(msg.payload)))
    client._sock = cast(Any, sock)

    # A zero timeout: select() reports nothing readable, only pending() says there is data.
    assert client._loop(timeout=0.0) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert got == [("t/a", b"one")]
    assert client._loop(timeout=0.0) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert got == [("t/a", b"one"), ("t/b", b"two")]
    client._sock = None


def test_paho_writes_a_queued_packet_exactly_as_given(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    client._sock = cast(Any, left)
    pubacks = bytes([0x40, 2, 0, 7, 0x40, 2, 1, 2])  # two PUBACKs (mids 7 and 258), one buffer

    assert client._packet_queue(0x40, pubacks, 0, 1) == MQTTErrorCode.MQTT_ERR_SUCCESS
    client._sock = None

    assert right.recv(64) == pubacks  # written at once, though no loop() ran


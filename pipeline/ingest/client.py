"""paho's MQTT client, tuned for draining many QoS 1 messages on one thread.

paho-mqtt (pinned at 2.2.0) reads each packet with several ``recv`` calls (the command byte,
each byte of the remaining length, then the rest), builds an ``MQTTMessage`` and takes
three locks per PUBLISH, and sends each PUBACK as its own write plus a wake-up byte on an
internal socket pair. At thousands of messages per second that was about half of ingest's
CPU. Three changes, each behind one of paho's own seams:

* :class:`BufferedSocket` reads up to 256 KiB per system call and serves paho's reads from
  memory. It reports what it holds through ``pending()``, the method paho already asks of
  TLS sockets before it waits in ``select()``, so data already read is processed at once and
  never waits for the socket to become readable again.
* :meth:`IngestClient._packet_read` parses the complete QoS 0/1 PUBLISH packets at the front
  of that buffer itself and hands ``(topic, payload, mid, qos)`` to ``on_publish_fast``:
  a few slices per message, no objects. Everything else (other packet types, QoS 2, a
  packet cut at the end of the buffer, a malformed one) takes paho's own path from the
  same buffer, so paho's state machine and error handling are unchanged.
* :meth:`IngestClient.ack_in_order` acknowledges a whole landed batch with one write: the
  PUBACKs are concatenated in arrival order (MQTT requires PUBLISH order) and queued as one
  outgoing buffer.

When the handler says stop (the caller's batch is full), the client reads nothing more until
the next ``loop_read()``. paho 2.2 ignores ``loop_read``'s ``max_packets`` and reads one packet
per message it has in flight, and ingest's receipts awaiting their PUBACKs are such messages:
without the stop, every one of them let one more PUBLISH into a full batch (a commit's 50
receipts overfilled the next batch by 29 messages, measured, and left the last batch of a
backlog short of full, waiting out the flush interval).

An oversize PUBLISH (payload over ``oversize_limit``) is never assembled: paho would build
the whole packet, then a message object, before anyone could look at its size (30 messages
of 20 MB once took ingest from 0.2 to 2.5 GB). From its header on, the client hashes the
payload as the chunks come in, keeps its first ``oversize_kept`` bytes, drops the rest, and
hands ``on_oversize_fast`` the head, the size and the SHA-256. A header cut at the end of a
read is carried over to the next read (it is at most a few dozen bytes for our topics), so
the size is always known before paho could start buffering the body.

None of it changes what is acknowledged or when: acks still go out only after the commit.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

CHUNK_BYTES: Final = 256 * 1024
_PUBACK: Final = struct.Struct("!BBH")
_PUBACK_TYPE: Final = 0x40
_PUBLISH_TYPE: Final = 0x30

OVERSIZE_KEPT: Final = 64 * 1024
"""Default bytes of an oversize payload handed on (see :attr:`IngestClient.oversize_kept`)."""

PublishHandler = Callable[[str, bytes, int, int, bool], bool]
"""Called with ``(topic, payload, mid, qos, retain)`` for each QoS 0 or 1 PUBLISH; returns
whether to go on reading (False leaves the rest of the buffer for the next read, e.g. when
the caller's batch is full)."""
OversizeHandler = Callable[[str, bytes, int, str, int, int, bool], bool]
"""Called with ``(topic, head, size, sha256, mid, qos, retain)`` once an oversize PUBLISH has
been read: ``head`` is its payload's first bytes, ``size`` the payload's length and
``sha256`` its hex digest; returns whether to go on reading, like :data:`PublishHandler`."""


class _Header:
    """Where a PUBLISH's parts sit in a buffer (parsed, not yet consumed)."""

    __slots__ = ("body", "mid", "qos", "retain", "stop", "topic")

    def __init__(self, topic: str, mid: int, qos: int, retain: bool, body: int,
                 stop: int) -> None:
        self.topic, self.mid, self.qos, self.retain = topic, mid, qos, retain
        self.body, self.stop = body, stop
        """``body``: offset of the payload; ``stop``: offset just past the packet."""


_CUT: Final = "cut"
""":func:`_publish_header`'s answer for a PUBLISH whose header goes past the buffer's end."""


class _Skip:
    """An oversize PUBLISH being read: hashed as it arrives, only its head kept."""

    __slots__ = ("head", "header", "left", "sha256", "size")

    def __init__(self, header: _Header, size: int) -> None:
        self.header, self.size, self.left = header, size, size
        self.head = bytearray()
        self.sha256 = hashlib.sha256()


class BufferedSocket:
    """A socket whose ``recv`` reads large chunks and hands them out in the sizes asked for.

    Every other attribute (``send``, ``fileno``, ``close``, ``setblocking``...) is the
    wrapped socket's, so ``select()`` waits on the real descriptor.
    """

    def __init__(self, sock: Any, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._sock, self._chunk = sock, chunk_bytes
        self.buffer = b""
        self.pos = 0
        """Bytes of ``buffer`` before ``pos`` have been handed out."""
        self.carry = b""
        """The start of a packet cut at the end of the last read, put before the next one
        (not ``pending()``: nothing can be done with it until more arrives)."""
        self.skip: _Skip | None = None
        """The oversize PUBLISH being read, if any (its state belongs to this connection)."""

    def recv(self, size: int) -> bytes:
        """Up to ``size`` bytes: from memory, else from one large read of the socket.

        Raises what the socket raises (``BlockingIOError`` when nothing is there, TLS
        want-read errors), so paho's handling of those is unchanged; ``b""`` at end of stream.
        """
        if self.pos >= len(self.buffer) and not self.fill():
            return b""
        buffer, pos = self.buffer, self.pos
        end = min(pos + size, len(buffer))
        self.pos = end
        return buffer[pos:end]

    def fill(self) -> bool:
        """Replace the (fully consumed) buffer with one large read; False at end of stream.

        Raises:
            BlockingIOError: nothing to read now (or the TLS layer's want-read error).
        """
        data = self._sock.recv(self._chunk)
        if not data:
            return False
        if self.carry:
            data, self.carry = self.carry + data, b""
        self.buffer, self.pos = data, 0
        return True

    def carry_rest(self) -> None:
        """Keep what is left of the buffer for the next :meth:`fill` (a cut packet start)."""
        self.carry, self.buffer, self.pos = self.buffer[self.pos:], b"", 0

    def pending(self) -> int:
        """Bytes readable without waiting: those held here plus a TLS socket's own."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self.buffer) - self.pos + int(inner)

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class IngestClient(mqtt.Client):
    """A paho client with chunked reads, direct PUBLISH parsing and batched PUBACKs.

    Set ``on_publish_fast`` to receive QoS 0/1 PUBLISHes as plain values; ``on_message``
    still gets the (rare) ones that take paho's path. MQTT 3.1.1 only: version 5 packets
    carry properties, and those go through paho. Set ``oversize_limit`` and
    ``on_oversize_fast`` too, and a PUBLISH whose payload exceeds the limit is read without
    ever being held whole (see the module docstring).
    """

    on_publish_fast: PublishHandler | None = None
    on_oversize_fast: OversizeHandler | None = None
    oversize_limit: int | None = None
    """Largest payload handed on whole; None: no limit (everything is read whole)."""
    oversize_kept: int = OVERSIZE_KEPT
    """Bytes of an oversize payload kept for ``on_oversize_fast``."""

    _stopped = False
    """The handler said stop during this ``loop_read()``: read nothing more in it."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """paho's, which calls :meth:`_packet_read` once per message in flight (see the
        module docstring); a stop from the handler ends the call."""
        self._stopped = False
        return super().loop_read(max_packets)

    def _packet_read(self) -> MQTTErrorCode:
        sock = self._sock
        handler = self.on_publish_fast
        if (handler is None or not isinstance(sock, BufferedSocket)
                or self._in_packet["command"] != 0
                or self._protocol != MQTTProtocolVersion.MQTTv311):
            return super()._packet_read()
        if self._stopped:
            return MQTTErrorCode.MQTT_ERR_AGAIN  # loop_read() returns; the batch is full
        if sock.pos >= len(sock.buffer):
            try:
                if not sock.fill():
                    return MQTTErrorCode.MQTT_ERR_CONN_LOST
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError:
                return super()._packet_read()  # let paho log and report the error
        limit = self.oversize_limit if self.on_oversize_fast is not None else None
        if sock.skip is not None:
            return self._skip_oversize(sock)
        handled, go_on = _read_publishes(sock, handler, limit)
        if handled:
            self._heard()
            self._stopped = not go_on
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        if limit is not None:
            header = _publish_header(sock.buffer, sock.pos)
            if header == _CUT:
                sock.carry_rest()  # the size is not known yet: never let paho buffer it
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            if isinstance(header, _Header) and header.stop - header.body > limit:
                sock.skip = _Skip(header, header.stop - header.body)
                sock.pos = header.body
                return self._skip_oversize(sock)
        return super()._packet_read()

    def _heard(self) -> None:
        with self._msgtime_mutex:
            self._last_bytes_received = time.monotonic()

    def _skip_oversize(self, sock: BufferedSocket) -> MQTTErrorCode:
        """Hash and drop what the buffer holds of the oversize PUBLISH being read; hand it on
        once all of it has passed."""
        skip = sock.skip
        assert skip is not None
        take = min(skip.left, len(sock.buffer) - sock.pos)
        chunk = memoryview(sock.buffer)[sock.pos:sock.pos + take]
        skip.sha256.update(chunk)
        room = self.oversize_kept - len(skip.head)
        if room > 0:
            skip.head += chunk[:room]
        chunk.release()
        skip.left -= take
        sock.pos += take
        self._heard()
        if skip.left:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        sock.skip = None
        header, on_oversize = skip.header, self.on_oversize_fast
        if on_oversize is not None:
            self._stopped = not on_oversize(header.topic, bytes(skip.head), skip.size,
                                            skip.sha256.hexdigest(), header.mid, header.qos,
                                            header.retain)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack_in_order(self, mids: Sequence[int]) -> None:
        """Send the PUBACKs of QoS 1 message ``mids``, in this order, in one write."""
        if not mids:
            return
        packet = b"".join([_PUBACK.pack(_PUBACK_TYPE, 2, mid) for mid in mids])
        # The same queue paho's own ack() uses: written now, or by the next loop() if the
        # socket is full; paho only looks inside packets of type PUBLISH or DISCONNECT.
        self._packet_queue(_PUBACK_TYPE, packet, 0, 1)


def _read_publishes(sock: BufferedSocket, handler: PublishHandler,
                    limit: int | None = None) -> tuple[int, bool]:
    """Hand every complete QoS 0/1 PUBLISH at the front of ``sock``'s buffer to ``handler``.

    Stops before anything else (another packet type, QoS 2, a packet cut at the end of the
    buffer, a malformed length or topic, a payload over ``limit``) and leaves it for the
    caller, or after the PUBLISH for which ``handler`` returned False. Returns how many it
    handled, and False if the handler said stop.
    """
    buffer, pos, end = sock.buffer, sock.pos, len(sock.buffer)
    handled = 0
    while pos < end:
        command = buffer[pos]
        qos = (command >> 1) & 3
        if command & 0xF0 != _PUBLISH_TYPE or qos > 1:
            break
        start, length, shift = pos + 1, 0, 0
        while start < end and start - pos <= 4:
            byte = buffer[start]
            length |= (byte & 0x7F) << shift
            start, shift = start + 1, shift + 7
            if byte < 0x80:
                break
        else:
            break  # the length is cut off, or longer than four bytes: paho decides
        stop = start + length
        if stop > end or length < 2:
            break
        topic_end = start + 2 + (buffer[start] << 8 | buffer[start + 1])
        body = topic_end + 2 * qos
        if body > stop:
            break
        try:
            topic = buffer[start + 2:topic_end].decode()
        except UnicodeDecodeError:
            break
        if limit is not None and stop - body > limit:
            break
        mid = buffer[topic_end] << 8 | buffer[topic_end + 1] if qos else 0
        sock.pos = pos = stop  # consumed before the handler runs: never handed out twice
        handled += 1
        if not handler(topic, buffer[body:stop], mid, qos, bool(command & 1)):
            return handled, False
    return handled, True


def _publish_header(buffer: bytes, pos: int) -> _Header | str | None:
    """The QoS 0/1 PUBLISH header at ``buffer[pos:]``, :data:`_CUT` if it goes past the end,
    or None for anything else (another packet, QoS 2, a malformed length or topic: paho's)."""
    end = len(buffer)
    if pos >= end:
        return None
    command = buffer[pos]
    qos = (command >> 1) & 3
    if command & 0xF0 != _PUBLISH_TYPE or qos > 1:
        return None
    start, length, shift = pos + 1, 0, 0
    while True:
        if start >= end:
            return _CUT
        if start - pos > 4:
            return None  # a remaining length of more than four bytes: paho rejects it
        byte = buffer[start]
        length |= (byte & 0x7F) << shift
        start, shift = start + 1, shift + 7
        if byte < 0x80:
            break
    stop = start + length
    if length < 2:
        return None
    if start + 2 > end:
        return _CUT
    topic_end = start + 2 + (buffer[start] << 8 | buffer[start + 1])
    body = topic_end + 2 * qos
    if body > stop:
        return None
    if body > end:
        return _CUT
    try:
        topic = buffer[start + 2:topic_end].decode()
    except UnicodeDecodeError:
        return None
    mid = buffer[topic_end] << 8 | buffer[topic_end + 1] if qos else 0
    return _Header(topic, mid, qos, bool(command & 1), body, stop)

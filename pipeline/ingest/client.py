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

None of it changes what is acknowledged or when: acks still go out only after the commit.
"""

from __future__ import annotations

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

PublishHandler = Callable[[str, bytes, int, int], bool]
"""Called with ``(topic, payload, mid, qos)`` for each QoS 0 or 1 PUBLISH; returns whether
to go on reading (False leaves the rest of the buffer for the next read, e.g. when the
caller's batch is full)."""


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
        self.buffer, self.pos = data, 0
        return True

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
    carry properties, and those go through paho.
    """

    on_publish_fast: PublishHandler | None = None

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def _packet_read(self) -> MQTTErrorCode:
        sock = self._sock
        handler = self.on_publish_fast
        if (handler is None or not isinstance(sock, BufferedSocket)
                or self._in_packet["command"] != 0
                or self._protocol != MQTTProtocolVersion.MQTTv311):
            return super()._packet_read()
        if sock.pos >= len(sock.buffer):
            try:
                if not sock.fill():
                    return MQTTErrorCode.MQTT_ERR_CONN_LOST
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError:
                return super()._packet_read()  # let paho log and report the error
        if _read_publishes(sock, handler):
            with self._msgtime_mutex:
                self._last_bytes_received = time.monotonic()
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._packet_read()

    def ack_in_order(self, mids: Sequence[int]) -> None:
        """Send the PUBACKs of QoS 1 message ``mids``, in this order, in one write."""
        if not mids:
            return
        packet = b"".join([_PUBACK.pack(_PUBACK_TYPE, 2, mid) for mid in mids])
        # The same queue paho's own ack() uses: written now, or by the next loop() if the
        # socket is full; paho only looks inside packets of type PUBLISH or DISCONNECT.
        self._packet_queue(_PUBACK_TYPE, packet, 0, 1)


def _read_publishes(sock: BufferedSocket, handler: PublishHandler) -> int:
    """Hand every complete QoS 0/1 PUBLISH at the front of ``sock``'s buffer to ``handler``.

    Stops before anything else (another packet type, QoS 2, a packet cut at the end of the
    buffer, a malformed length or topic) and leaves it for paho. Returns how many it handled.
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
        mid = buffer[topic_end] << 8 | buffer[topic_end + 1] if qos else 0
        sock.pos = pos = stop  # consumed before the handler runs: never handed out twice
        handled += 1
        if not handler(topic, buffer[body:stop], mid, qos):
            break
    return handled

"""The ingest client's chunked reads and direct PUBLISH parsing, on a real socket pair.

End to end (real mosquitto, exactly once, crashes) the client is exercised by every test in
test_ingest.py; here the parser meets the awkward cases: packets cut at a read boundary,
packets it must leave to paho, a caller that stops reading, and (through the broker)
messages larger than one read between small ones.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from edge.wire import contract
from pipeline.ingest.client import CHUNK_BYTES, BufferedSocket, IngestClient, _read_publishes
from pipeline.ingest.service import Ingestor
from tests.pipeline import test_ingest as wire


def publish(topic: str, payload: bytes, mid: int = 0, qos: int = 1) -> bytes:
    body = struct.pack("!H", len(topic)) + topic.encode()
    if qos:
        body += struct.pack("!H", mid)
    body += payload
    length, encoded = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        encoded.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes([0x30 | qos << 1]) + bytes(encoded) + body


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    right.setblocking(False)
    yield left, right
    left.close()
    right.close()


def drain(sock: BufferedSocket, stop_after: int = 10**9
          ) -> list[tuple[str, bytes, int, int]]:
    seen: list[tuple[str, bytes, int, int]] = []

    def handler(topic: str, payload: bytes, mid: int, qos: int, retain: bool) -> bool:
        seen.append((topic, payload, mid, qos))
        return len(seen) < stop_after

    _read_publishes(sock, handler)
    return seen


def test_complete_publishes_are_parsed_and_a_cut_one_waits_for_the_rest(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    big = b"x" * 300  # a two-byte remaining length
    stream = (publish("a/b", b"one", 1) + publish("a/c", big, 2) + publish("q0", b"z", qos=0)
              + publish("a/d", b"four", 4))
    left.sendall(stream[:-3])
    sock = BufferedSocket(right)

    assert sock.fill()
    assert drain(sock) == [("a/b", b"one", 1, 1), ("a/c", big, 2, 1), ("q0", b"z", 0, 0)]
    assert sock.pending() == len(publish("a/d", b"four", 4)) - 3  # left for the next read
    left.sendall(stream[-3:])
    assert sock.recv(4) == stream[-len(publish("a/d", b"four", 4)):][:4]  # paho's path


def test_other_packets_and_qos_2_are_left_to_paho(
        pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    pingresp = bytes([0xD0, 0])
    left.sendall(publish("t", b"1", 1) + pingresp + publish("t", b"2", 2)
                 + publish("t", b"3", 3, qos=2))
    sock = BufferedSocket(right)
    sock.fill()

    assert drain(sock) == [("t", b"1", 1, 1)]
    assert sock.recv(2) == pingresp
    assert drain(sock) == [("t", b"2", 2, 1)]
    assert drain(sock) == []  # QoS 2 needs paho's PUBREC/PUBREL handshake
    assert sock.pending() == len(publish("t", b"3", 3, qos=2))


def test_the_handler_can_stop_the_read(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    left.sendall(b"".join(publish("t", bytes([i]), i + 1) for i in range(5)))
    sock = BufferedSocket(right)
    sock.fill()

    assert [m[2] for m in drain(sock, stop_after=2)] == [1, 2]
    assert [m[2] for m in drain(sock)] == [3, 4, 5]
    assert sock.pending() == 0


def test_small_chunks_and_malformed_lengths(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    stream = publish("t", b"abc", 7) + bytes([0x32, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    left.sendall(stream)
    sock = BufferedSocket(right, chunk_bytes=4)
    received = b""
    while len(received) < len(stream):
        received += sock.recv(3)  # chunked reads hand out the stream unchanged
    assert received == stream

    whole = BufferedSocket(right)
    whole.buffer = stream
    assert drain(whole) == [("t", b"abc", 7, 1)]
    assert whole.pending() == 6  # a five-byte remaining length is paho's to reject


def test_end_of_stream_and_nothing_to_read(pair: tuple[socket.socket, socket.socket]) -> None:
    left, right = pair
    sock = BufferedSocket(right)
    with pytest.raises(BlockingIOError):
        sock.recv(1)
    left.close()
    assert sock.recv(1) == b""


@pytest.mark.broker
def test_messages_larger_than_a_read_land_between_small_ones(broker_url: str,
                                                              db_path: Path) -> None:
    def big(msg_id: str, n: int) -> tuple[str, bytes]:
        batch = contract.TelemetryBatch(msg_id, "VBIG", [wire.T0 + i for i in range(n)],
                                        [f"Vehicle.Big.S{i}" for i in range(n)],
                                        [float(i) for i in range(n)])
        return contract.telemetry_topic("VBIG"), contract.encode(batch)

    wires = [wire.telemetry("s0", "VBIG"), big("b1", 9_000), wire.telemetry("s1", "VBIG"),
             big("b2", 12_000), big("b3", 700), wire.telemetry("s2", "VBIG")]
    assert max(len(p) for _, p in wires) > CHUNK_BYTES  # cut across chunk reads
    with Ingestor(broker_url, db_path, client_id=f"big-{uuid.uuid4().hex[:8]}",
                  flush_interval_s=0.05, require_registered_vehicles=False) as ingestor:
        wire.publish(broker_url, wires)
        assert ingestor.wait_for(lambda s: s.messages_landed == 6, timeout=30)
        assert ingestor.stats.telemetry_rows == 3 * 50 + 9_000 + 12_000 + 700


def retained(packet: bytes) -> bytes:
    """``packet`` (a PUBLISH) with its retain flag set."""
    return bytes([packet[0] | 1]) + packet[1:]


@pytest.mark.parametrize("chunk", [3, 64, 1000, CHUNK_BYTES])
def test_an_oversize_publish_is_hashed_and_cut_while_it_is_read(
        pair: tuple[socket.socket, socket.socket], chunk: int) -> None:
    left, right = pair
    huge = bytes(range(256)) * 40  # 10,240 bytes, over the limit of 1,000 set below
    stream = (publish("v/a", b"before", 1) + retained(publish("v/b", huge, 2))
              + publish("v/c", b"x" * 1000, 3) + retained(publish("v/d", b"after", 4)))
    left.sendall(stream)
    client = IngestClient(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
    whole: list[tuple[str, bytes, int, bool]] = []
    cut: list[tuple[str, bytes, int, str, int, bool]] = []

    def on_whole(topic: str, payload: bytes, mid: int, qos: int, retain: bool) -> bool:
        whole.append((topic, payload, mid, retain))
        return True

    def on_cut(topic: str, head: bytes, size: int, sha256: str, mid: int, qos: int,
               retain: bool) -> bool:
        cut.append((topic, head, size, sha256, mid, retain))
        return True

    client.on_publish_fast, client.on_oversize_fast = on_whole, on_cut

    def on_message(_client: object, _userdata: object, m: mqtt.MQTTMessage) -> None:
        on_whole(m.topic, bytes(m.payload), m.mid, m.qos, bool(m.retain))  # paho's own path

    client.on_message = on_message
    client.oversize_limit, client.oversize_kept = 1000, 100
    sock = BufferedSocket(right, chunk_bytes=chunk)
    client._sock = cast(Any, sock)
    held = 0
    for _ in range(10 * len(stream)):  # each call makes progress until the stream is read
        if len(whole) == 3:
            break
        assert client._packet_read() in (MQTTErrorCode.MQTT_ERR_SUCCESS,
                                         MQTTErrorCode.MQTT_ERR_AGAIN)
        held = max(held, len(sock.buffer) + len(sock.carry) + len(client._in_packet["packet"]))
    client._sock = None

    assert whole == [("v/a", b"before", 1, False), ("v/c", b"x" * 1000, 3, False),
                     ("v/d", b"after", 4, True)]
    assert cut == [("v/b", huge[:100], len(huge), hashlib.sha256(huge).hexdigest(), 2, True)]
    # Never more than a read, a carried header or a message within the limit (which a cut
    # one, like v/c, takes paho's path for) in memory.
    assert held <= max(chunk, 1000) + 16


@pytest.mark.broker
def test_a_full_batch_stops_the_read_while_receipts_await_their_pubacks(
        mosquitto_url: str, db_path: Path) -> None:
    # paho reads one packet per message it has in flight, and each commit leaves one receipt
    # per vehicle in flight: the next batch must still close at flush_rows, not past it
    # (else the backlog's last batch is short and waits out the flush interval).
    vehicles, batches = 40, 3
    client_id = f"full-{uuid.uuid4().hex[:8]}"
    options: dict[str, Any] = {"client_id": client_id, "require_registered_vehicles": False,
                               "flush_rows": vehicles * wire.SIGNALS, "flush_interval_s": 30.0}
    Ingestor(mosquitto_url, db_path, **options).start().stop()  # the session queues offline
    wire.publish(mosquitto_url, [wire.telemetry(f"full-{b}-{v}", f"VFULL{v:02d}")
                                 for b in range(batches) for v in range(vehicles)])
    commits: list[int] = []
    with Ingestor(mosquitto_url, db_path, **options,
                  after_commit=lambda con, result: commits.append(result.messages_landed)
                  ) as ingestor:
        assert ingestor.wait_for(lambda s: s.messages_landed == batches * vehicles, timeout=120)
        assert ingestor.stats.receipts_published == batches * vehicles
    assert commits == [vehicles] * batches

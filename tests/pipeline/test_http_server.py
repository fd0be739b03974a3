"""The webhook server over real sockets: the request deadline, the connection cap, stopping.

Each test runs a JsonHttpServer on 127.0.0.1 and talks to it with raw sockets, sending what a
well-behaved client never would: a body or head trickled byte by byte, nothing at all, more
connections than the server serves. ``Expect: 100-continue`` is used to know, without
sleeping, that the server has parsed a head and is waiting for the body.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.crm.http_server import HttpServerError, JsonHttpServer

BODY = b'{"note": "' + b"x" * 400 + b'"}'


class Recorder:
    """A handler that keeps every body it is given and answers how long it was."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        if body == b"boom":
            raise RuntimeError("a handler bug")
        with self.lock:
            self.bodies.append(body)
        return 200, {"bytes": len(body)}


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def _server(recorder: Recorder, **limits: Any) -> JsonHttpServer:
    return JsonHttpServer({("POST", "/in"): recorder, ("GET", "/in"): recorder}, **limits)


def _address(server: JsonHttpServer) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _connect(server: JsonHttpServer) -> socket.socket:
    return socket.create_connection(_address(server), timeout=10)


def _head(length: int, *extra: str) -> bytes:
    lines = ["POST /in HTTP/1.1", "Host: x", f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _answer(data: bytes) -> tuple[int, dict[str, Any]]:
    """The status and JSON answer of the last response in ``data`` (after any 100 Continue)."""
    last = data[data.rindex(b"HTTP/1.1 "):]
    head, _, body = last.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _trickle(sock: socket.socket, pieces: Iterator[bytes]) -> int:
    """Send one piece every 20 ms until the server answers; how many bytes went out."""
    sent = 0
    for piece in pieces:
        readable, _, _ = select.select([sock], [], [], 0.02)
        if readable:
            break
        sock.sendall(piece)
        sent += len(piece)
    return sent


def test_a_body_trickled_byte_by_byte_is_answered_408_at_the_deadline(
    recorder: Recorder,
) -> None:
    # Each byte comes well within any per-read timeout; only a deadline on the whole
    # request stops it before the 400 bytes (8 s at this pace) are in.
    with _server(recorder, request_timeout_s=0.5) as server, _connect(server) as sock:
        sock.sendall(_head(len(BODY)))
        sent = _trickle(sock, (BODY[i:i + 1] for i in range(len(BODY))))
        status, answer = _answer(_read_to_end(sock))
    assert status == 408 and "no body" in answer["error"]
    assert sent < len(BODY)
    assert recorder.bodies == [] and server.refused_count == 1


def test_a_head_trickled_line_by_line_is_answered_408_at_the_deadline(
    recorder: Recorder,
) -> None:
    with _server(recorder, request_timeout_s=0.5) as server, _connect(server) as sock:
        sock.sendall(b"POST /in HTTP/1.1\r\nHost: x\r\n")
        lines = (f"X-Pad-{i}: y\r\n".encode() for i in range(2000))  # 40 s at this pace
        sent = _trickle(sock, lines)
        status, answer = _answer(_read_to_end(sock))
    assert status == 408 and "request head" in answer["error"]
    assert sent < 2000 * len(b"X-Pad-0000: y\r\n")
    assert recorder.bodies == []


def test_a_connection_that_sends_nothing_is_answered_and_closed(recorder: Recorder) -> None:
    with _server(recorder, request_timeout_s=0.3) as server, _connect(server) as sock:
        status, answer = _answer(_read_to_end(sock))  # the test's socket would time out first
    assert status == 408 and "deadline" in answer["error"]


def test_connections_over_the_cap_are_answered_503_and_the_others_still_served(
    recorder: Recorder,
) -> None:
    with _server(recorder, max_connections=2) as server:
        holders = [_connect(server) for _ in range(2)]
        try:
            for sock in holders:  # two requests waiting for their bodies hold both places
                sock.sendall(_head(len(BODY), "Expect: 100-continue", "Connection: close"))
                assert b"100 Continue" in _read_until(sock, b"\r\n\r\n")

            conn = http.client.HTTPConnection(*_address(server), timeout=10)
            conn.request("POST", "/in", body=BODY)
            refused = conn.getresponse()
            assert refused.status == 503 and refused.getheader("retry-after") == "1"
            assert "connections" in json.loads(refused.read())["error"]
            conn.close()

            for sock in holders:  # the held requests complete normally
                sock.sendall(BODY)
                assert _answer(_read_to_end(sock)) == (200, {"bytes": len(BODY)})
        finally:
            for sock in holders:
                sock.close()
        # both closed (the server closed them first, so it has counted them out): room again
        conn = http.client.HTTPConnection(*_address(server), timeout=10)
        conn.request("POST", "/in", body=b"{}")
        assert conn.getresponse().status == 200
        conn.close()
    assert recorder.bodies == [BODY, BODY, b"{}"]
    assert server.refused_count == 1


def test_stopping_answers_a_request_mid_body_at_once_and_frees_the_port(
    recorder: Recorder,
) -> None:
    server = _server(recorder).start()  # the default 10 s deadline is not waited for
    host, port = _address(server)
    assert port != 0
    with _connect(server) as sock:
        sock.sendall(_head(len(BODY), "Expect: 100-continue"))
        assert b"100 Continue" in _read_until(sock, b"\r\n\r\n")
        sock.sendall(BODY[:10])
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        status, answer = _answer(_read_to_end(sock))
    stopping.join()
    assert status == 503 and "stopping" in answer["error"]
    assert recorder.bodies == []
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=10).close()


def test_the_port_is_bound_before_start_and_served_once_start_returns(
    recorder: Recorder,
) -> None:
    server = _server(recorder, port=0)
    try:
        host, port = _address(server)
        assert port != 0
        server.start()
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/in")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.stop()


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), [
    ("GET", "/elsewhere", None, 404, "no such endpoint GET /elsewhere"),
    ("PUT", "/in", b"{}", 405, "PUT is not allowed on /in"),
    ("POST", "/in", b"boom", 500, "internal error"),
])
def test_errors_outside_the_handlers_are_json_too(recorder: Recorder, method: str, path: str,
                                                  body: bytes | None, status: int,
                                                  words: str) -> None:
    with _server(recorder) as server:
        conn = http.client.HTTPConnection(*_address(server), timeout=10)
        conn.request(method, path, body=body)
        answer = conn.getresponse()
        assert answer.status == status
        assert answer.getheader("content-type") == "application/json"
        assert words in json.loads(answer.read())["error"]
        conn.close()


@pytest.mark.parametrize(("head", "status", "words"), [
    (b"POST /in HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400, "Host"),
    (b"POST /in HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 100_000, 431, "HTTP"),  # no end
], ids=["no-host", "head-too-large"])
def test_requests_h11_refuses_are_answered_in_json(recorder: Recorder, head: bytes,
                                                   status: int, words: str) -> None:
    with _server(recorder) as server, _connect(server) as sock:
        sock.sendall(head)
        got, answer = _answer(_read_to_end(sock))
    assert got == status and words in answer["error"]
    assert recorder.bodies == [] and server.refused_count == 1


def test_a_port_in_use_is_refused_in_one_line(recorder: Recorder) -> None:
    with _server(recorder) as first, pytest.raises(HttpServerError, match="cannot listen on"):
        _server(recorder, port=_address(first)[1])

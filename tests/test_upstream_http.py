"""The gateway's HTTP/1.1 client to upstream, against a scripted server on a real socket."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from app.gateway import upstream_http
from app.gateway.upstream_http import Origin, Pool, UpstreamError, UpstreamTimeout, exchange


class ScriptedServer:
    """Accepts connections; for each request (head read up to the blank line, then the body by
    Content-Length or chunked) sends the next scripted answer. An answer of None closes the
    connection instead; `close_after` closes it after answering."""

    def __init__(self, answers: list, *, close_after: bool = False):
        self.answers = list(answers)
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while self.answers:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                answer = self.answers.pop(0)
                if answer is None:
                    return
                conn.sendall(answer)
                if self.close_after:
                    return

    def pool(self) -> Pool:
        return Pool(Origin.parse(f"http://127.0.0.1:{self.port}"), connect_timeout=5)

    def stop(self) -> None:
        self.listener.close()


def ask(pool: Pool, body=None, method: str = "PUT", timeout: float = 5):
    response = exchange(pool, method, "/dav/x", [("Depth", "0")], body, read_timeout=timeout)
    try:
        return response.status, response.headers, response.read_all(1 << 20), response
    finally:
        response.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_keep_alive_connection_is_reused_and_the_request_is_framed():
    server = ScriptedServer([OK, OK])
    pool = server.pool()
    assert ask(pool, b"abc")[:3] == (200, [("Content-Length", "2")], b"ok")
    assert ask(pool, b"")[2] == b"ok"
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"PUT /dav/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nDepth: 0\r\n" % server.port)
    assert b"Content-Length: 3\r\n" in first and first.endswith(b"\r\n\r\nabc")


def test_chunked_answers_with_extensions_and_trailers():
    answer = b"HTTP/1.1 207 Multi-Status\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
    server = ScriptedServer([answer, OK])
    pool = server.pool()
    assert ask(pool)[2] == b"abcde"
    assert ask(pool)[2] == b"ok" and server.connections == 1  # the trailer was consumed: reusable


def test_interim_answers_are_skipped():
    server = ScriptedServer([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK])
    assert ask(server.pool(), b"x")[:3] == (200, [("Content-Length", "2")], b"ok")


def test_an_answer_without_length_is_read_until_close_and_not_reused():
    server = ScriptedServer([b"HTTP/1.1 200 OK\r\n\r\nall of it"], close_after=True)
    pool = server.pool()
    assert ask(pool)[2] == b"all of it"
    assert pool._idle == []


@pytest.mark.parametrize("answer, message", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "ended early"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx", "conflicting Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x answer"),
    (b"HTTP/1.1 200 OK\r\n bad: fold\r\n\r\n", "malformed header"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
])
def test_broken_answers_are_upstream_errors(answer, message):
    server = ScriptedServer([answer], close_after=True)
    with pytest.raises(UpstreamError, match=message):
        ask(server.pool())


def test_a_pooled_connection_the_server_closed_is_replaced_once():
    server = ScriptedServer([OK, None, OK])  # the second request finds the connection closed
    pool = server.pool()
    assert ask(pool, b"one")[2] == b"ok"
    assert ask(pool, b"two")[2] == b"ok"  # retried on a new connection: bytes can be sent again
    assert server.connections == 2 and server.requests[-1].endswith(b"two")


def test_a_streamed_body_is_not_sent_twice(monkeypatch):
    class Stream:
        length, started = 4, False

        def chunks(self):
            self.started = True
            yield b"data"

    server = ScriptedServer([OK, None, OK])
    pool = server.pool()
    ask(pool, b"one")
    with pytest.raises(UpstreamError):
        ask(pool, Stream())  # half-consumed: the client's body cannot be replayed
    assert server.requests[-1].endswith(b"data")


def test_idle_connections_closed_by_the_server_are_dropped_before_use(monkeypatch):
    monkeypatch.setattr(upstream_http, "CHECK_AFTER_IDLE", 0.0)
    server = ScriptedServer([OK, OK], close_after=True)  # closes every connection after answering
    pool = server.pool()
    ask(pool, b"one")
    time.sleep(0.2)  # the server's close has arrived

    class Stream:
        length, started = 3, False

        def chunks(self):
            self.started = True
            yield b"two"

    assert ask(pool, Stream())[2] == b"ok"  # a fresh connection, so the stream went out once
    assert server.connections == 2


def test_a_silent_upstream_times_out():
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        pool = Pool(Origin.parse(f"http://127.0.0.1:{listener.getsockname()[1]}"), connect_timeout=5)
        with pytest.raises(UpstreamTimeout):
            ask(pool, b"x", timeout=0.3)
    finally:
        listener.close()


def test_an_unreachable_upstream_is_an_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamError, match="cannot connect"):
        ask(Pool(Origin.parse(f"http://127.0.0.1:{port}"), connect_timeout=2))


def test_header_values_with_line_breaks_are_refused():
    with pytest.raises(ValueError):
        upstream_http.request_head("GET", "/", "h", [("X", "a\r\nInjected: 1")], -1)

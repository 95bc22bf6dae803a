"""The gateway's upstream connections over time: an upstream that closes idle keep-alive connections
after 2 s (Apache's default is 5 s), a gateway left idle for more than a minute, a Redis restart and
a web worker killed in the middle of an upload. Uploads whose body cannot be sent twice (streamed,
and spliced ones of 1 MiB and more) must never land on a connection upstream has already closed.

The web process is gunicorn as the Procfile starts it.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import signal
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

pytestmark = pytest.mark.faults

IDLE = 65.0
SMALL, LARGE = 300_000, 2_000_000  # streamed / spliced (≥ 1 MiB with a known length)


class StrictUpstream(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Answers a PUT with the length and sha256 of what it received; drops idle connections after 2 s."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        self.connections = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 2.0  # an idle keep-alive connection is closed after this

            def setup(handler_self):
                super().setup()
                self.connections += 1

            def do_PUT(handler_self):  # noqa: N802
                length = int(handler_self.headers.get("Content-Length", "0"))
                digest, left = hashlib.sha256(), length
                while left:
                    data = handler_self.rfile.read(min(left, 65536))
                    if not data:
                        return
                    digest.update(data)
                    left -= len(data)
                answer = f"{length} {digest.hexdigest()}".encode()
                handler_self.send_response(201)
                handler_self.send_header("Content-Length", str(len(answer)))
                handler_self.end_headers()
                handler_self.wfile.write(answer)

            def log_message(handler_self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def put(port: int, size: int, name: str) -> tuple[int, bytes]:
    body = os.urandom(size)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.putrequest("PUT", f"/remote.php/dav/files/alice/{name}")
    connection.putheader("Content-Length", str(size))
    connection.endheaders()
    for offset in range(0, size, 65536):
        connection.send(body[offset:offset + 65536])
    response = connection.getresponse()
    answer = response.read()
    connection.close()
    expected = f"{size} {hashlib.sha256(body).hexdigest()}".encode()
    return response.status, b"intact" if answer == expected else answer


def worker_pid(master: int) -> int:
    return int(Path(f"/proc/{master}/task/{master}/children").read_text().split()[0])


def test_uploads_after_a_minute_idle_a_redis_restart_and_a_killed_worker(make_stack, figures):
    upstream = StrictUpstream()
    stack = make_stack(upstream_url=upstream.url, workers=0)
    port = stack.web.port
    try:
        fresh = [put(port, SMALL, "a"), put(port, LARGE, "b")]
        time.sleep(IDLE)  # every pooled upstream connection was closed by upstream long ago
        after_idle = [put(port, SMALL, "c"), put(port, LARGE, "d")]
        stack.redis.restart(down_seconds=1.0)  # uploads observed as writes look Redis up; they must not care
        after_redis = [put(port, SMALL, "e"), put(port, LARGE, "f")]
        worker = worker_pid(stack.web.pid)
        cut = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        cut.putrequest("PUT", "/remote.php/dav/files/alice/g")
        cut.putheader("Content-Length", str(20_000_000))
        cut.endheaders()
        cut.send(os.urandom(4_000_000))
        os.kill(worker, signal.SIGKILL)  # in the middle of a spliced upload
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if worker_pid(stack.web.pid) != worker:
                    break
            except (IndexError, OSError):
                pass
            time.sleep(0.2)
        after_kill = [put(port, SMALL, "h"), put(port, LARGE, "i")]
    finally:
        upstream.shutdown()
    figures.record("gateway_idle", idle_s=IDLE, upstream_connections=upstream.connections)
    for label, results in (("fresh", fresh), (f"after {IDLE:.0f} s idle", after_idle),
                           ("after a Redis restart", after_redis), ("after a killed worker", after_kill)):
        assert results == [(201, b"intact"), (201, b"intact")], f"{label}: {results}"

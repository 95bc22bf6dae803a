"""Large bodies spliced from socket to socket, in the web process as deployed (gunicorn, gevent).

Uploads and downloads of known length of 1 MiB and more bypass Python (gateway/splice.py): the
bytes must arrive intact, stream (upstream has the start before the client sends the rest), and
the connections must stay usable for the next request, or be closed when a transfer broke.
"""
from __future__ import annotations

import hashlib
import http.client
import socket
import time

import pytest
import requests

from support.env import ADMIN_PASSWORD, SECRET_KEY, WEBHOOK_SECRET
from support.nextcloud_stub import NextcloudStub, pattern_bytes, pattern_sha256
from support.nginx_layout import Gunicorn, memory_kib, reset_peak_memory

ALICE = ("alice", "alice-pw")
AUTH = "Basic YWxpY2U6YWxpY2UtcHc="
SIZE = 24 * 1024 * 1024
CHUNK = 1024 * 1024
HANG = 30


@pytest.fixture(scope="module")
def stub():
    server = NextcloudStub().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def davpush(tmp_path_factory, stub, redis_url, vapid_key_file):
    port = _free_port()
    env = {
        "REDIS_URL": redis_url, "UPSTREAM_URL": stub.url, "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "WEBHOOK_SECRET": WEBHOOK_SECRET, "VAPID_PRIVATE_KEY_FILE": vapid_key_file,
        "VAPID_SUBJECT": "mailto:admin@example.test", "SECRET_KEY": SECRET_KEY, "ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    server = Gunicorn(env, port, tmp_path_factory.mktemp("splice"))
    yield server
    server.stop()


@pytest.fixture
def gates(stub):
    stub.clear_requests()
    stub.reset_gates()
    return stub


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_upload_of_known_length_arrives_intact_and_streams(davpush, gates):
    gates.upload_may_finish.clear()
    connection = http.client.HTTPConnection("127.0.0.1", davpush.port, timeout=HANG)
    connection.putrequest("PUT", "/remote.php/dav/files/alice/spliced.bin")
    connection.putheader("Authorization", AUTH)
    connection.putheader("Content-Type", "application/octet-stream")
    connection.putheader("Content-Length", str(SIZE))
    connection.endheaders()
    for offset in range(0, SIZE, CHUNK):
        if offset == 4 * CHUNK:  # nothing more is sent until upstream has the start
            assert gates.upload_started.wait(timeout=HANG)
            gates.upload_may_finish.set()
        connection.send(pattern_bytes(CHUNK, offset))
    response = connection.getresponse()
    response.read()
    assert response.status in (201, 204)
    upload = gates.uploads()[("alice", "spliced.bin")]
    assert (upload.length, upload.sha256) == (SIZE, pattern_sha256(SIZE))
    # The same connection serves the next request: gunicorn's reader was left at the body's end.
    connection.request("GET", "/remote.php/dav/files/alice/any.bin?size=1000", headers={"Authorization": AUTH})
    again = connection.getresponse()
    assert again.status == 200 and again.read() == pattern_bytes(1000)
    connection.close()


def test_a_download_arrives_intact_without_growing_the_worker(davpush, gates):
    worker = davpush.worker_pid()
    peak_reset = reset_peak_memory(worker)
    before = memory_kib(worker, "VmRSS" if peak_reset else "VmHWM")
    session = requests.Session()
    for _ in range(2):  # the second on the same connections, client's and upstream's
        digest, total = hashlib.sha256(), 0
        with session.get(f"{davpush.url}/remote.php/dav/files/alice/big.bin?size={SIZE}", auth=ALICE, stream=True,
                         timeout=HANG) as response:
            assert response.status_code == 200 and response.headers["Content-Length"] == str(SIZE)
            for piece in response.iter_content(256 * 1024):
                digest.update(piece)
                total += len(piece)
        assert total == SIZE and digest.hexdigest() == pattern_sha256(SIZE)
    small = session.get(f"{davpush.url}/remote.php/dav/files/alice/big.bin?size=100", auth=ALICE, timeout=HANG)
    assert small.status_code == 200 and small.content == pattern_bytes(100)
    grown_mib = (memory_kib(worker, "VmHWM") - before) / 1024
    assert grown_mib < 8, f"the worker grew by {grown_mib:.0f} MiB for two {SIZE >> 20} MiB downloads"


def test_an_upload_cut_short_closes_the_connection_and_nothing_hangs(davpush, gates):
    tracebacks = davpush.log().count("Traceback")
    client = socket.create_connection(("127.0.0.1", davpush.port), timeout=HANG)
    client.sendall(b"PUT /remote.php/dav/files/alice/cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: " + AUTH.encode()
                   + b"\r\nContent-Length: %d\r\n\r\n" % SIZE + pattern_bytes(3 * CHUNK))
    time.sleep(0.5)
    client.close()  # 21 MiB never come
    time.sleep(1)  # davpush notices, drops both connections
    response = requests.get(f"{davpush.url}/remote.php/dav/files/alice/big.bin?size=10", auth=ALICE, timeout=HANG)
    assert response.status_code == 200 and response.content == pattern_bytes(10)
    upload = gates.uploads().get(("alice", "cut.bin"))
    assert upload is None or upload.length < SIZE  # never a complete file made of a broken upload
    assert davpush.log().count("Traceback") == tracebacks, davpush.log()[-3000:]  # a client leaving is no server error


def test_small_bodies_take_the_ordinary_path(davpush, gates):
    data = pattern_bytes(300 * 1024)
    response = requests.put(f"{davpush.url}/remote.php/dav/files/alice/small.bin", data=data, auth=ALICE,
                            timeout=HANG)
    assert response.status_code in (201, 204)
    upload = gates.uploads()[("alice", "small.bin")]
    assert upload.sha256 == hashlib.sha256(data).hexdigest()


def test_a_client_leaving_a_download_is_not_a_server_error(davpush, gates):
    before = davpush.log().count("Traceback")
    client = socket.create_connection(("127.0.0.1", davpush.port), timeout=HANG)
    client.sendall(b"GET /remote.php/dav/files/alice/big.bin?size=%d HTTP/1.1\r\nHost: x\r\nAuthorization: " % SIZE
                   + AUTH.encode() + b"\r\n\r\n")
    received = 0
    while received < 2 * CHUNK:
        received += len(client.recv(65536))
    client.close()  # 22 MiB unread
    time.sleep(1)
    response = requests.get(f"{davpush.url}/remote.php/dav/files/alice/big.bin?size=10", auth=ALICE, timeout=HANG)
    assert response.status_code == 200 and response.content == pattern_bytes(10)
    assert davpush.log().count("Traceback") == before, davpush.log()[-3000:]  # gunicorn's "[ERROR] Socket error ..."

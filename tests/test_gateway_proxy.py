"""The gateway as a plain proxy: streaming both ways, headers, redirects, errors."""
import hashlib
import threading

import requests

from support.nextcloud_stub import pattern_bytes, pattern_sha256

ALICE = ("alice", "alice-pw")
SIZE = 50 * 1024 * 1024
CHUNK = 1024 * 1024


def test_50mb_upload_is_streamed_not_buffered(gateway, nextcloud):
    """The client only sends the rest once upstream has already received the start:
    a gateway that buffered the body would never forward anything and this would time out."""
    nextcloud.upload_may_finish.clear()
    started_upstream = []

    def body():
        sent = 0
        while sent < SIZE:
            if sent == 4 * CHUNK:
                started_upstream.append(nextcloud.upload_started.wait(timeout=30))
                nextcloud.upload_may_finish.set()
            yield pattern_bytes(CHUNK, sent)
            sent += CHUNK

    response = requests.put(gateway.dav("/files/alice/big.bin"), data=body(), auth=ALICE,
                            headers={"Content-Type": "application/octet-stream"}, timeout=120)
    assert started_upstream == [True]
    assert response.status_code in (201, 204)
    upload = nextcloud.uploads()[("alice", "big.bin")]
    assert (upload.length, upload.sha256) == (SIZE, pattern_sha256(SIZE))


def test_upload_with_content_length_keeps_it(gateway, nextcloud):
    data = pattern_bytes(3 * CHUNK)
    response = requests.put(gateway.dav("/files/alice/sized.bin"), data=data, auth=ALICE)
    assert response.status_code in (201, 204)
    recorded = nextcloud.requests_for("PUT")[-1]
    assert recorded.header("Content-Length") == str(len(data)) and recorded.header("Transfer-Encoding") is None


def test_50mb_download_is_streamed_not_buffered(gateway, nextcloud):
    """Upstream holds back everything after its first chunk until the client has read
    the start: a buffering gateway would deadlock here."""
    nextcloud.download_may_finish.clear()
    with requests.get(gateway.dav(f"/files/alice/big.bin?size={SIZE}"), auth=ALICE, stream=True, timeout=120) as response:
        assert response.status_code == 200 and response.headers["Content-Length"] == str(SIZE)
        digest, total = hashlib.sha256(), 0
        for piece in response.iter_content(16 * 1024):
            if total == 0:
                assert nextcloud.download_started.wait(10)  # set just after the first chunk was written
                nextcloud.download_may_finish.set()
            digest.update(piece)
            total += len(piece)
    assert total == SIZE and digest.hexdigest() == pattern_sha256(SIZE)


def test_redirects_are_passed_to_the_client(gateway):
    response = requests.get(gateway.dav("/redirect-me"), auth=ALICE, allow_redirects=False)
    assert response.status_code == 301 and response.headers["Location"] == "http://example.invalid/elsewhere"


def test_hop_by_hop_headers_dropped_forwarded_headers_added(gateway, nextcloud):
    requests.get(gateway.dav("/calendars/alice/work/"), auth=ALICE,
                 headers={"Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1", "Proxy-Authorization": "x",
                          "X-Forwarded-For": "203.0.113.9", "X-Custom": "kept"})
    recorded = nextcloud.requests_for("GET")[-1]
    names = {name.lower() for name, _ in recorded.headers}
    assert "x-secret-hop" not in names and "proxy-authorization" not in names
    assert recorded.header("X-Custom") == "kept" and recorded.header("Authorization").startswith("Basic ")
    assert recorded.header("X-Forwarded-For") == "203.0.113.9, 127.0.0.1"
    assert recorded.header("X-Forwarded-Proto") == "http"
    assert recorded.header("X-Forwarded-Host") == gateway.url.split("//")[1]
    assert recorded.header("Host") == nextcloud.url.split("//")[1]


def test_double_slashes_are_forwarded_not_redirected(gateway, nextcloud):
    response = requests.request("PROPFIND", gateway.dav("//calendars/alice/"), auth=ALICE, headers={"Depth": "0"},
                                allow_redirects=False)
    assert response.status_code != 308
    assert nextcloud.requests_for("PROPFIND")[-1].path.endswith("/dav//calendars/alice/")


def test_percent_encoding_and_query_are_kept(gateway, nextcloud):
    requests.get(gateway.dav("/calendars/alice/work/a%20b%2Fc.ics?x=1&y=%2F"), auth=ALICE)
    assert nextcloud.requests_for("GET")[-1].path == "/remote.php/dav/calendars/alice/work/a%20b%2Fc.ics?x=1&y=%2F"


def test_status_headers_and_body_come_back_unchanged(gateway, nextcloud):
    etag = nextcloud.add_object("alice", "work", "e.ics")
    direct = requests.get(nextcloud.url + "/remote.php/dav/calendars/alice/work/e.ics", auth=ALICE)
    proxied = requests.get(gateway.dav("/calendars/alice/work/e.ics"), auth=ALICE)
    assert proxied.status_code == direct.status_code == 200
    assert proxied.content == direct.content and proxied.headers["ETag"] == etag
    assert proxied.headers["Content-Type"] == direct.headers["Content-Type"]
    missing = requests.get(gateway.dav("/calendars/alice/work/missing.ics"), auth=ALICE)
    assert missing.status_code == 404


def test_unreachable_upstream_is_502(start_gateway):
    from support.servers import free_port

    down = start_gateway(f"http://127.0.0.1:{free_port()}")
    response = requests.get(down.dav("/calendars/alice/"), auth=ALICE)
    assert response.status_code == 502 and response.headers["Content-Type"].startswith("text/plain")


def test_parallel_requests_do_not_mix(gateway, nextcloud):
    for n in range(10):
        nextcloud.add_object("alice", "work", f"{n}.ics")
    results = {}

    def fetch(n):
        results[n] = requests.get(gateway.dav(f"/calendars/alice/work/{n}.ics"), auth=ALICE).content

    threads = [threading.Thread(target=fetch, args=(n,)) for n in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(f"{n}".encode() in results[n] or results[n] == nextcloud.objects("alice", "work")[f"{n}.ics"] for n in range(10))

"""The shipped nginx layout in a real nginx, in front of davpush (gunicorn, as deployed) and a
Nextcloud stand-in: DAV and /push/ go through davpush, everything else straight to Nextcloud,
50 MB bodies stream both ways, and the documented layout does not loop. The method-split variant
(sites-available/nextcloud-split.conf) sends GET, HEAD and REPORT under /remote.php/dav/ straight
to Nextcloud and everything else as the full layout does.

Needs the nginx binary (Debian package; `.ci/run` installs it). Without it these tests skip,
unless DAVPUSH_REQUIRE_NGINX is set (CI), where they fail instead.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests

from app.gateway.loop import LoopMark
from app.store import Store
from support import bodies
from support.env import ADMIN_PASSWORD, SECRET_KEY, WEBHOOK_SECRET
from support.nextcloud_stub import STATUS_JSON, NextcloudStub, ics_event, pattern_bytes, pattern_sha256
from support.nginx_layout import (
    SITE,
    SPLIT_SITE,
    Gunicorn,
    Nginx,
    Ports,
    check_config,
    find_nginx,
    memory_kib,
    render,
    reset_peak_memory,
)
from support.push_receiver import ClientKeys

NGINX = find_nginx()
if NGINX is None:
    if os.environ.get("DAVPUSH_REQUIRE_NGINX"):
        raise RuntimeError("DAVPUSH_REQUIRE_NGINX is set but no nginx binary was found")
    pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run installs it)", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
ALICE = ("alice", "alice-pw")
HANG = 20  # seconds: hang detectors only
SIZE = 50 * 1024 * 1024
CHUNK = 1024 * 1024
MARK = LoopMark(SECRET_KEY)
LOOP_SENTENCE = (
    "loops back to davpush (UPSTREAM_URL must be Nextcloud's internal address, "
    "not the public vhost that routes /remote.php/dav/ to davpush)"
)


def davpush_env(redis_url: str, vapid_key_file: str, upstream: str, public: str, **extra) -> dict:
    return {
        "REDIS_URL": redis_url,
        "UPSTREAM_URL": upstream,
        "PUBLIC_URL": public,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "VAPID_PRIVATE_KEY_FILE": vapid_key_file,
        "VAPID_SUBJECT": "mailto:admin@example.test",
        "SECRET_KEY": SECRET_KEY,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        **extra,
    }


class Layout:
    def __init__(self, nginx: Nginx, davpush: Gunicorn, stub: NextcloudStub | None, env: dict):
        self.nginx, self.davpush, self.stub, self.env = nginx, davpush, stub, env
        self.public = nginx.public

    def get(self, method: str, path: str, **kwargs):
        kwargs.setdefault("timeout", HANG)
        kwargs.setdefault("allow_redirects", False)
        return requests.request(method, self.public + path, verify=self.nginx.certificate, **kwargs)

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "app.cli", "check"], cwd=ROOT, env=dict(os.environ, **self.env),
                              capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def layout(tmp_path_factory, redis_url, vapid_key_file):
    """The documented layout: davpush's UPSTREAM_URL is nginx's internal server."""
    directory = tmp_path_factory.mktemp("nginx")
    stub = NextcloudStub().start()
    ports = Ports.pick()
    nginx = Nginx(NGINX, render(directory, ports, int(stub.url.rsplit(":", 1)[1])), ports)
    env = davpush_env(redis_url, vapid_key_file, nginx.internal, nginx.public)
    davpush = Gunicorn(env, ports.davpush, directory)
    yield Layout(nginx, davpush, stub, env)
    nginx.stop()  # first: its keep-alive connections would hold up gunicorn's graceful stop
    davpush.stop()
    stub.stop()


@pytest.fixture(scope="module")
def looping(tmp_path_factory, redis_url, vapid_key_file):
    """The layout the issue describes: UPSTREAM_URL is the public server, which routes DAV to davpush."""
    directory = tmp_path_factory.mktemp("nginx-loop")
    ports = Ports.pick()
    nginx = Nginx(NGINX, render(directory, ports, stub_port=9), ports)
    env = davpush_env(redis_url, vapid_key_file, nginx.public, nginx.public, UPSTREAM_VERIFY_TLS="false")
    davpush = Gunicorn(env, ports.davpush, directory)
    yield Layout(nginx, davpush, None, env)
    nginx.stop()
    davpush.stop()


@pytest.fixture
def stub(layout):
    layout.stub.clear_requests()
    layout.stub.reset_gates()
    return layout.stub


def through_davpush(record) -> bool:
    return MARK.carried_by(record.header("Via"))


# -- routing ------------------------------------------------------------------------------------


def test_propfind_for_push_goes_through_davpush_to_the_internal_server(layout, stub):
    response = layout.get("PROPFIND", "/remote.php/dav/calendars/alice/", data=bodies.PUSH_PROPFIND_DAVX5, auth=ALICE,
                          headers={"Depth": "1", "Content-Type": "application/xml"})
    assert response.status_code == 207, response.text
    assert b"web-push" in response.content and b"topic>" in response.content
    assert response.headers.get("X-Request-Id")  # davpush answered
    (upstream,) = stub.requests_for("PROPFIND")
    assert through_davpush(upstream)
    assert upstream.header("Host") == f"127.0.0.1:{layout.nginx.ports.internal}"  # the internal server
    assert upstream.header("X-Forwarded-Host") == f"127.0.0.1:{layout.nginx.ports.public}"  # the public one
    assert upstream.header("X-Forwarded-Proto") == "https"
    assert upstream.header("Authorization").startswith("Basic ")


def test_dav_root_without_slash_goes_to_davpush(layout, stub):
    response = layout.get("OPTIONS", "/remote.php/dav", auth=ALICE)
    assert response.status_code == 200 and "webdav-push" in response.headers["DAV"]
    assert through_davpush(stub.requests_for("OPTIONS")[-1])


def test_push_urls_are_answered_by_davpush(layout, stub, redis_url):
    Store(redis.Redis.from_url(redis_url)).heartbeat("w1")
    response = layout.get("GET", "/push/healthz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["upstream"] == {"ok": True, "detail": f"{layout.nginx.internal} answers 200"}
    assert through_davpush(stub.requests_for("OPTIONS")[-1])  # the health check went the internal way
    check = layout.check()
    assert check.returncode == 0, check.stdout
    assert f"ok   upstream: {layout.nginx.internal} answers 200" in check.stdout.splitlines()


@pytest.mark.parametrize("path, reaches_stub_as", [
    ("/status.php", "/status.php"),
    ("/index.php/apps/files/", "/index.php/apps/files/"),
    ("/apps/calendar/", "/index.php/apps/calendar/"),  # pretty URL → front controller
    ("/ocs/v2.php/cloud/capabilities?format=json", "/ocs/v2.php/cloud/capabilities?format=json"),
    ("/remote.php/webdav/", "/remote.php/webdav/"),  # the old files endpoint is not davpush's
])
def test_everything_else_goes_straight_to_nextcloud(layout, stub, path, reaches_stub_as):
    response = layout.get("GET", path, auth=ALICE)
    if path == "/status.php":
        assert response.status_code == 200 and response.content == STATUS_JSON
    assert "X-Request-Id" not in response.headers  # not davpush
    (record,) = stub.requests_for("GET")
    assert record.path == reaches_stub_as and not through_davpush(record)


@pytest.mark.parametrize("service", ["caldav", "carddav"])
def test_well_known_redirects_come_from_nextcloud_not_davpush(layout, stub, service):
    response = layout.get("GET", f"/.well-known/{service}")
    assert response.status_code == 301
    assert response.headers["Location"] == f"{layout.public}/remote.php/dav/"
    assert "X-Request-Id" not in response.headers
    assert stub.requests_for() == []
    assert f"/.well-known/{service}" not in layout.davpush.log()
    # ... and the client's next step lands at davpush
    found = layout.get("PROPFIND", "/remote.php/dav/", auth=ALICE, headers={"Depth": "0"})
    assert found.status_code == 207 and through_davpush(stub.requests_for("PROPFIND")[-1])


def test_plain_http_is_redirected_to_https(layout):
    response = requests.get(layout.nginx.redirect + "/remote.php/dav/", allow_redirects=False, timeout=HANG)
    assert response.status_code == 301 and response.headers["Location"].startswith("https://")


# -- streaming through nginx, davpush, nginx ----------------------------------------------------


def test_50mb_put_streams_through_to_nextcloud(layout, stub):
    """The client sends the rest only once Nextcloud has received the start: any hop that
    buffered the whole body would stall this until the stub's gate gives up."""
    worker = layout.davpush.worker_pid()
    peak_reset = reset_peak_memory(worker)
    before = memory_kib(worker, "VmRSS" if peak_reset else "VmHWM")
    stub.upload_may_finish.clear()
    started_upstream = []

    def body():
        for offset in range(0, SIZE, CHUNK):
            if offset == 4 * CHUNK:
                started_upstream.append(stub.upload_started.wait(timeout=30))
                stub.upload_may_finish.set()
            yield pattern_bytes(CHUNK, offset)

    response = layout.get("PUT", "/remote.php/dav/files/alice/big.bin", data=body(), auth=ALICE, timeout=120,
                          headers={"Content-Type": "application/octet-stream"})
    assert started_upstream == [True]
    assert response.status_code in (201, 204), response.text
    upload = stub.uploads()[("alice", "big.bin")]
    assert (upload.length, upload.sha256) == (SIZE, pattern_sha256(SIZE))
    assert through_davpush(stub.requests_for("PUT")[-1])
    grown_mib = (memory_kib(worker, "VmHWM") - before) / 1024
    assert grown_mib < 20, f"davpush's worker grew by {grown_mib:.0f} MiB for a 50 MiB upload"


def test_50mb_get_streams_back_to_the_client(layout, stub):
    """Nextcloud holds back everything after its first chunk until the client has the start."""
    worker = layout.davpush.worker_pid()
    peak_reset = reset_peak_memory(worker)
    before = memory_kib(worker, "VmRSS" if peak_reset else "VmHWM")
    stub.download_may_finish.clear()
    digest, total = hashlib.sha256(), 0
    with layout.get("GET", f"/remote.php/dav/files/alice/big.bin?size={SIZE}", auth=ALICE, stream=True,
                    timeout=120) as response:
        assert response.status_code == 200 and response.headers["Content-Length"] == str(SIZE)
        for piece in response.iter_content(16 * 1024):
            if total == 0:
                assert stub.download_started.wait(10)  # set just after the first chunk was written
                stub.download_may_finish.set()
            digest.update(piece)
            total += len(piece)
    assert total == SIZE and digest.hexdigest() == pattern_sha256(SIZE)
    assert through_davpush(stub.requests_for("GET")[-1])
    grown_mib = (memory_kib(worker, "VmHWM") - before) / 1024
    assert grown_mib < 20, f"davpush's worker grew by {grown_mib:.0f} MiB for a 50 MiB download"


# -- the loop the old documentation built -------------------------------------------------------


@pytest.mark.parametrize("method, headers, body", [
    ("PROPFIND", {"Depth": "1", "Content-Type": "application/xml"}, bodies.PUSH_PROPFIND_DAVX5),
    ("OPTIONS", {}, None),
    ("GET", {}, None),
    ("PUT", {"Content-Type": "text/calendar"}, b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"),
])
def test_upstream_url_at_the_public_server_is_508_at_once(looping, method, headers, body):
    response = looping.get(method, "/remote.php/dav/calendars/alice/work/", data=body, headers=headers, auth=ALICE)
    assert response.status_code == 508
    assert "UPSTREAM_URL must be Nextcloud's internal address" in response.text


def test_loop_is_named_by_healthz_check_and_log(looping):
    health = looping.get("GET", "/push/healthz")
    assert health.status_code == 503
    assert health.json()["checks"]["upstream"] == {"ok": False, "detail": f"{looping.nginx.public} {LOOP_SENTENCE}"}
    check = looping.check()
    assert check.returncode == 1
    assert f"FAIL upstream: {looping.nginx.public} {LOOP_SENTENCE}" in check.stdout.splitlines()
    log = looping.davpush.log()
    assert "request loop: a request this davpush forwarded came back to it" in log
    assert "alice-pw" not in log and "Authorization" not in log


# -- the shipped files --------------------------------------------------------------------------


@pytest.mark.parametrize("site", [SITE, SPLIT_SITE])
def test_shipped_php_part_is_valid_nginx(tmp_path, site):
    """`nginx -t` on the layout with the real PHP-FPM part (only addresses substituted)."""
    from support.nginx_layout import PHP_PART, SHIPPED

    (tmp_path / "fastcgi_params").write_text(
        Path("/etc/nginx/fastcgi_params").read_text() if Path("/etc/nginx/fastcgi_params").exists() else ""
    )
    conf = render(tmp_path, Ports.pick(), stub_port=9, php_part=(SHIPPED / PHP_PART).read_text(), site=site)
    result = check_config(NGINX, conf)
    assert result.returncode == 0, result.stderr


# -- the method-split layout (sites-available/nextcloud-split.conf) -----------------------------

SYNC_COLLECTION = (b'<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/>'
                   b"<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>")


@pytest.fixture(scope="module")
def split_layout(tmp_path_factory, redis_url, vapid_key_file):
    """The method-split layout, as documented: davpush's UPSTREAM_URL is nginx's internal server."""
    directory = tmp_path_factory.mktemp("nginx-split")
    stub = NextcloudStub().start()
    ports = Ports.pick()
    nginx = Nginx(NGINX, render(directory, ports, int(stub.url.rsplit(":", 1)[1]), site=SPLIT_SITE), ports)
    # registrations in these tests name a push service on loopback
    env = davpush_env(redis_url, vapid_key_file, nginx.internal, nginx.public,
                      PUSH_ALLOW_HTTP="true", PUSH_ALLOWED_NETWORKS="127.0.0.0/8")
    davpush = Gunicorn(env, ports.davpush, directory)
    yield Layout(nginx, davpush, stub, env)
    nginx.stop()
    davpush.stop()
    stub.stop()


@pytest.fixture
def split(split_layout):
    split_layout.stub.clear_requests()
    split_layout.stub.reset_gates()
    return split_layout


def gateway_writes(redis_url) -> int:
    counters = Store(redis.Redis.from_url(redis_url)).counters()
    return sum(value for key, value in counters.items() if key.split("|")[0] == "gateway_writes")


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/remote.php/dav/files/alice/split-get.bin?size=3000", None, 200),
    ("HEAD", "/remote.php/dav/files/alice/split-head.bin?size=3000", None, 200),
    ("REPORT", "/remote.php/dav/calendars/alice/split-report/", SYNC_COLLECTION, 207),
])
def test_split_get_head_report_go_straight_to_nextcloud(split, method, path, body, status):
    if method == "REPORT":
        split.stub.add_calendar("alice", "split-report")
    response = split.get(method, path, data=body, auth=ALICE, headers={"Depth": "1"} if body else {})
    assert response.status_code == status, response.text
    assert "X-Request-Id" not in response.headers  # not answered by davpush
    (record,) = split.stub.requests_for(method)
    assert record.path == path and not through_davpush(record)
    assert path.split("?")[0] not in split.davpush.log()
    if method == "GET":
        assert response.content == pattern_bytes(3000)
    if method == "HEAD":
        assert response.headers["Content-Length"] == "3000"
    if method == "REPORT":  # the body got past nginx's hand-over to Nextcloud
        assert record.body == SYNC_COLLECTION
        assert b"sync-token>" in response.content


def test_split_propfind_gets_push_properties_from_davpush(split):
    response = split.get("PROPFIND", "/remote.php/dav/calendars/alice/", data=bodies.PUSH_PROPFIND_DAVX5, auth=ALICE,
                         headers={"Depth": "1", "Content-Type": "application/xml"})
    assert response.status_code == 207, response.text
    assert b"web-push" in response.content and b"topic>" in response.content
    assert response.headers.get("X-Request-Id")
    (upstream,) = split.stub.requests_for("PROPFIND")
    assert through_davpush(upstream)
    assert upstream.header("Host") == f"127.0.0.1:{split.nginx.ports.internal}"  # davpush's way: the internal server


@pytest.mark.parametrize("path", ["/remote.php/dav/", "/remote.php/dav"])
def test_split_options_goes_through_davpush(split, path):
    response = split.get("OPTIONS", path, auth=ALICE)
    assert response.status_code == 200 and "webdav-push" in response.headers["DAV"]
    assert through_davpush(split.stub.requests_for("OPTIONS")[-1])


def test_split_registration_and_write_go_through_davpush(split, redis_url):
    """POST push-register is answered by davpush; a PUT to the registered calendar is observed
    by davpush as a write (it looks the calendar up and submits a change)."""
    keys = ClientKeys.generate()
    push_resource = f"http://127.0.0.1:9/up/{uuid.uuid4().hex}"  # new on every run: Redis is not emptied here
    registered = split.get("POST", "/remote.php/dav/calendars/alice/work/", auth=ALICE,
                           data=bodies.davx5_old(push_resource, keys.p256dh, keys.auth, expires=None),
                           headers={"Content-Type": bodies.XML_UTF8})
    assert registered.status_code == 201, registered.text
    assert registered.headers["Location"].startswith(f"{split.public}/push/subscriptions/")
    assert split.stub.requests_for("POST") == []  # davpush answered it, Nextcloud never saw it

    before = gateway_writes(redis_url)
    written = split.get("PUT", "/remote.php/dav/calendars/alice/work/split-e1.ics", data=ics_event("split-e1"),
                        auth=ALICE, headers={"Content-Type": "text/calendar"})
    assert written.status_code == 201, written.text
    assert through_davpush(split.stub.requests_for("PUT")[-1])
    deadline = time.monotonic() + HANG
    while gateway_writes(redis_url) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway_writes(redis_url) == before + 1, split.davpush.log()


@pytest.mark.parametrize("method", ["LOCK", "SEARCH", "ACL"])
def test_split_other_methods_go_through_davpush(split, method):
    split.get(method, "/remote.php/dav/calendars/alice/work/", auth=ALICE, data=b"<x/>",
              headers={"Content-Type": "application/xml"})
    (record,) = split.stub.requests_for(method)
    assert through_davpush(record)


def test_split_push_urls_are_answered_by_davpush(split, redis_url):
    Store(redis.Redis.from_url(redis_url)).heartbeat("w1")
    response = split.get("GET", "/push/healthz")  # a GET, but not under /remote.php/dav/
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["upstream"] == {"ok": True, "detail": f"{split.nginx.internal} answers 200"}


def test_split_internal_server_stays_free_of_davpush(split):
    response = requests.request("PROPFIND", split.nginx.internal + "/remote.php/dav/calendars/alice/",
                                data=bodies.PUSH_PROPFIND_DAVX5, auth=ALICE, timeout=HANG,
                                headers={"Depth": "1", "Content-Type": "application/xml"})
    assert response.status_code == 207, response.text
    assert b"web-push" not in response.content and "X-Request-Id" not in response.headers
    (record,) = split.stub.requests_for("PROPFIND")
    assert not through_davpush(record)


def test_split_loop_is_still_named_by_davpush_check(split):
    """UPSTREAM_URL at the split public server: `davpush check` probes with OPTIONS, which still
    goes through davpush, so the loop is found as with the full layout."""
    env = dict(split.env, UPSTREAM_URL=split.public, UPSTREAM_VERIFY_TLS="false")
    check = subprocess.run([sys.executable, "-m", "app.cli", "check"], cwd=ROOT, env=dict(os.environ, **env),
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 1
    assert f"FAIL upstream: {split.public} {LOOP_SENTENCE}" in check.stdout.splitlines()

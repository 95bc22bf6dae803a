"""`davpush demo`: the whole flow on one machine, in about ten seconds.

Starts Radicale as the upstream DAV server, davpush's gateway and a worker, and a
local Web Push receiver; registers a subscription exactly the way DAVx5 does;
changes an event with a CalDAV client; prints the decrypted push and how long it
took. Needs the demo extra (radicale, caldav, http_ece; dev includes it) and redis-server on PATH
(or REDIS_URL).
"""
from __future__ import annotations

import base64
import os
import queue
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

USER, PASSWORD = "demo", "demo-password"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(app) -> tuple[object, str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def _wait_http(url: str, what: str, process: subprocess.Popen | None = None, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited early")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {seconds:.0f} s")


def _start_radicale(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    (workdir / "users").write_text(f"{USER}:{PASSWORD}\n")
    config = workdir / "radicale.conf"
    config.write_text(
        f"[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = htpasswd\nhtpasswd_filename = {workdir / 'users'}\n"
        f"htpasswd_encryption = plain\n[storage]\nfilesystem_folder = {workdir / 'collections'}\n"
        "[rights]\ntype = owner_only\n[logging]\nlevel = warning\n"
    )
    process = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(config)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    _wait_http(url + "/.web/", "Radicale", process)
    return process, url


def _start_redis(workdir: Path) -> tuple[subprocess.Popen | None, str]:
    if os.environ.get("REDIS_URL"):
        return None, os.environ["REDIS_URL"]
    from .supervisor import start_private_redis

    return start_private_redis(workdir / "redis")


class _Receiver:
    """A local push service that decrypts what it receives (with the client's key)."""

    def __init__(self):
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.auth = secrets.token_bytes(16)
        self.p256dh = _b64(
            self.private_key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        )
        self.messages: queue.Queue = queue.Queue()

    def __call__(self, environ, start_response):
        request = Request(environ)
        import http_ece

        body = request.get_data()
        plaintext = http_ece.decrypt(body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm")
        self.messages.put((time.perf_counter(), dict(request.headers), plaintext))
        return Response(status=201, headers={"Location": "/msg"})(environ, start_response)


def run_demo() -> int:
    try:
        import caldav  # noqa: F401  (demo extra)
        import http_ece  # noqa: F401
        import radicale  # noqa: F401
    except ImportError:
        print("davpush demo needs the demo extra: pip install -e '.[demo]'", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="davpush-demo-"))
    processes: list[subprocess.Popen] = []
    try:
        return _run(workdir, processes)
    finally:
        for process in reversed(processes):  # worker before Redis before Radicale
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _run(workdir: Path, processes: list) -> int:
    import caldav

    from .. import create_app
    from ..core.config import load_settings
    from ..delivery.vapid import generate_key_file

    step = lambda text: print(f"\n== {text}", flush=True)  # noqa: E731
    step("starting Radicale (upstream), Redis, a push receiver, davpush web and worker")
    radicale_process, radicale_url = _start_radicale(workdir)
    processes.append(radicale_process)
    redis_process, redis_url = _start_redis(workdir)
    if redis_process:
        processes.append(redis_process)
    receiver = _Receiver()
    _, receiver_url = _serve(receiver)
    generate_key_file(str(workdir / "vapid.pem"))
    gateway_port = _free_port()
    env = {
        "REDIS_URL": redis_url,
        "UPSTREAM_URL": radicale_url,
        "UPSTREAM_FLAVOR": "generic",
        "DAV_PREFIX": "",
        "PUBLIC_URL": f"http://127.0.0.1:{gateway_port}",
        "WEBHOOK_SECRET": secrets.token_urlsafe(24),
        "SECRET_KEY": secrets.token_urlsafe(40),
        "VAPID_PRIVATE_KEY_FILE": str(workdir / "vapid.pem"),
        "VAPID_SUBJECT": "mailto:demo@example.com",
        "PUSH_ALLOW_HTTP": "true",
        "PUSH_ALLOWED_NETWORKS": "127.0.0.0/8",
        "PUSH_MIN_INTERVAL_MS": "0",
        "QUEUE_NAME": f"davpush-demo-{secrets.token_hex(3)}",
        "REDIS_PREFIX": f"demo{secrets.token_hex(3)}:",
        "LOG_LEVEL": "warning",
    }
    settings = load_settings(env)
    from ..core.logs import setup_logging

    setup_logging("text", "WARNING")
    app = create_app(settings)
    server = make_server("127.0.0.1", gateway_port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    gateway = settings.public_base
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=dict(os.environ, **env))
    processes.append(worker)
    print(f"   upstream {radicale_url}   gateway {gateway}   receiver {receiver_url}")

    step("creating a calendar through the gateway with the caldav client")
    client = caldav.DAVClient(gateway + "/", username=USER, password=PASSWORD)
    calendar = client.principal().make_calendar(name="Demo calendar", cal_id="demo-calendar")
    auth = (USER, PASSWORD)

    step("discovery, as DAVx5 does it: PROPFIND Depth 1 on the calendar home")
    propfind = (
        '<d:propfind xmlns:d="DAV:" xmlns:P="https://bitfire.at/webdav-push"><d:prop>'
        "<d:resourcetype/><d:displayname/><P:transports/><P:topic/></d:prop></d:propfind>"
    )
    answer = requests.request("PROPFIND", f"{gateway}/{USER}/", data=propfind, headers={"Depth": "1"}, auth=auth)
    from ..protocol import xmlsafe

    root = xmlsafe.parse(answer.content, max_bytes=1 << 20)
    topic = next(e.text for e in root.iter("{https://bitfire.at/webdav-push}topic") if e.text)
    vapid = next(e.text for e in root.iter("{https://bitfire.at/webdav-push}vapid-public-key") if e.text)
    print(f"   {answer.status_code}: topic {topic}, VAPID key {vapid[:20]}… ({len(vapid)} characters)")

    step("registration, with DAVx5's exact body (no trigger, no content-encoding)")
    body = (
        "<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>"
        '<n0:push-register xmlns:n0="https://bitfire.at/webdav-push"><n0:subscription><n0:web-push-subscription>'
        f"<n0:push-resource>{receiver_url}/up/demo</n0:push-resource>"
        f'<n0:subscription-public-key type="p256dh">{receiver.p256dh}</n0:subscription-public-key>'
        f"<n0:auth-secret>{_b64(receiver.auth)}</n0:auth-secret>"
        "</n0:web-push-subscription></n0:subscription></n0:push-register>"
    )
    registered = requests.post(
        calendar.url, data=body, headers={"Content-Type": "application/xml; charset=UTF-8"}, auth=auth
    )
    print(f"   {registered.status_code}  Location: {registered.headers.get('Location')}")
    print(f"        Expires: {registered.headers.get('Expires')}")
    if registered.status_code not in (201, 204):
        print(registered.text, file=sys.stderr)
        return 1

    step("changing an event with the caldav client (through the gateway)")
    started = time.perf_counter()
    calendar.save_event(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//davpush demo//EN\r\nBEGIN:VEVENT\r\nUID:demo-1@davpush\r\n"
        "DTSTAMP:20261125T120000Z\r\nDTSTART:20261126T090000Z\r\nDTEND:20261126T100000Z\r\nSUMMARY:Standup\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    saved = time.perf_counter()
    try:
        received, headers, plaintext = receiver.messages.get(timeout=20)
    except queue.Empty:
        print("no push arrived within 20 s", file=sys.stderr)
        return 1
    step("the push the phone would get, decrypted with the client's key")
    print(plaintext.decode())
    print(f"\n   TTL {headers.get('Ttl')}, Urgency {headers.get('Urgency')}, Authorization {headers.get('Authorization', '')[:24]}…")
    print(
        f"   save answered in {(saved - started) * 1000:.0f} ms; push received "
        f"{(received - saved) * 1000:.0f} ms after the save returned ({(received - started) * 1000:.0f} ms from the start of the save)"
    )
    server.shutdown()
    return 0

"""Shared plumbing for the davpush benchmarks (not a test module).

Everything runs on this machine: one Redis DB (BENCH_REDIS_URL, DB 12 unless set; only that DB is
ever written or flushed), a Node.js loopback receiver (bench/receiver.js, plain http on
127.0.0.1) and davpush processes started with a benchmark environment.
"""
from __future__ import annotations

import base64
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
PYTHON = sys.executable
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
BENCH_DB = int(urlsplit(REDIS_URL).path.strip("/") or 0)
WEBHOOK_SECRET = "bench-webhook-secret-0123456789abcdef"
SECRET_KEY = "bench-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
VAPID_SUBJECT = "mailto:bench@example.com"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- environment -------------------------------------------------------------------


def vapid_key_file() -> str:
    path = OUT / "vapid_private.pem"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        from app.delivery.vapid import generate_key_file

        generate_key_file(str(path))
    return str(path)


def bench_env(**overrides) -> dict:
    """Environment for davpush processes (and load_settings in this process)."""
    env = dict(os.environ)
    env.update(
        REDIS_URL=REDIS_URL,
        UPSTREAM_URL="http://127.0.0.1:9",
        PUBLIC_URL="http://127.0.0.1:8000",
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        VAPID_PRIVATE_KEY_FILE=vapid_key_file(),
        VAPID_SUBJECT=VAPID_SUBJECT,
        SECRET_KEY=SECRET_KEY,
        PUSH_ALLOW_HTTP="true",
        PUSH_ALLOWED_NETWORKS="127.0.0.0/8",
        PYTHONUNBUFFERED="1",
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def settings_for(env: dict):
    from app.core.config import load_settings

    return load_settings(env)


def services_for(env: dict):
    from app.core.services import build_services

    services = build_services(settings_for(env))
    assert services.redis.connection_pool.connection_kwargs.get("db") == BENCH_DB, f"benchmarks only ever use DB {BENCH_DB}"
    return services


def clean_bench_db() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    assert client.connection_pool.connection_kwargs.get("db") == BENCH_DB, f"refusing to flush a DB other than {BENCH_DB}"
    client.flushdb()
    client.close()


# -- processes --------------------------------------------------------------------


class Proc:
    """A child process in its own process group; stop() ends exactly that group."""

    def __init__(self, args, *, env=None, log_name: str, cwd=ROOT, stdout_pipe=False):
        OUT.mkdir(parents=True, exist_ok=True)
        self.log_path = OUT / log_name
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(
            args, cwd=str(cwd), env=env, start_new_session=True,
            stdout=subprocess.PIPE if stdout_pipe else self._log, stderr=self._log,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)  # the group this object created
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(5)
        self._log.close()


class Receiver:
    def __init__(self, latency_ms: float = 0, record: bool = False):
        args = ["node", str(BENCH / "receiver.js"), "--port", "0", "--latency-ms", str(latency_ms)]
        if record:
            args.append("--record")
        self.proc = Proc(args, log_name=f"receiver-{latency_ms:g}ms.log", stdout_pipe=True)
        line = self.proc.popen.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self.proc.stop()
            raise RuntimeError(f"receiver did not start: {line!r}; see {self.proc.log_path}")
        self.port = int(line.split()[1])
        self.base = f"http://127.0.0.1:{self.port}"
        self.latency_ms = latency_ms

    def _call(self, method: str, path: str, timeout: float = 120.0):
        request = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def reset(self) -> dict:
        return self._call("POST", "/_reset")

    def stats(self) -> dict:
        return self._call("GET", "/_stats")

    def wait(self, n: int, timeout: float = 120.0) -> dict:
        return self._call("GET", f"/_wait?n={n}&timeout_ms={int(timeout * 1000)}", timeout=timeout + 10)

    def records(self) -> list:
        return self._call("GET", "/_records", timeout=300)

    def endpoint(self, name: str) -> str:
        return f"{self.base}/push/{name}"

    def stop(self) -> None:
        self.proc.stop()


def wait_for_web(proc: Proc, port: int, timeout: float = 30.0) -> None:
    """Until the web process on `port` answers (any status) on /push/healthz."""
    import http.client

    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise RuntimeError(f"web process exited; see {proc.log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/push/healthz")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("web process did not answer")


def start_worker(env: dict, name: str = "worker", cwd=ROOT) -> Proc:
    """`python -m app.cli worker`: the production entry point (SimpleWorker + scheduler)."""
    return Proc([PYTHON, "-m", "app.cli", "worker"], env=env, log_name=f"{name}.log", cwd=cwd)


def wait_for_worker(services, proc: Proc, timeout: float = 30.0) -> None:
    from rq import Worker

    deadline = time.time() + timeout
    while time.time() < deadline:
        if not proc.alive():
            raise RuntimeError(f"worker exited; see {proc.log_path}")
        if any(w.name.endswith(f"-{proc.pid}") for w in Worker.all(connection=services.redis)):
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker did not register within {timeout} s; see {proc.log_path}")


@contextmanager
def cleanup(*stoppables):
    """Stop the given processes (in reverse order) and clean the benchmark's Redis DB on exit."""
    items = list(stoppables)
    try:
        yield items
    finally:
        for item in reversed(items):
            try:
                item.stop()
            except Exception as error:  # keep cleaning up
                print(f"cleanup: {error}", file=sys.stderr)
        clean_bench_db()


# -- subscriptions ----------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def client_keys():
    """A real P-256 client key pair and auth secret: (private key, p256dh, auth)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    point = private.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return private, b64url(point), b64url(secrets.token_bytes(16))


def make_subscriptions(services, receiver: Receiver, collection: str, count: int, *, prefix: str = "s", keep_keys=False):
    """Insert `count` subscriptions of one collection through Store.upsert.

    Returns (topic, [subscription, ...], {id: (private key, auth bytes)} when keep_keys)."""
    from app.protocol.subscription import Subscription
    from app.protocol.topics import topic_for_collection
    from app.protocol.triggers import Triggers

    topic = topic_for_collection(services.settings.secret_key, collection)
    now = int(time.time())
    subscriptions, keys = [], {}
    for i in range(count):
        private, p256dh, auth = client_keys()
        sub_id = f"{prefix}{i:05d}-{secrets.token_hex(6)}"
        subscription = Subscription(
            id=sub_id, user="/remote.php/dav/principals/users/bench", collection=collection, topic=topic,
            href=f"/remote.php/dav/{collection}/", push_resource=receiver.endpoint(sub_id),
            public_key=p256dh, auth_secret=auth, triggers=Triggers(content_depth="1"),
            expires=now + 7 * 86400, created=now, location=f"http://127.0.0.1:8000/push/subscriptions/{sub_id}",
        )
        services.store.upsert(subscription)
        subscriptions.append(subscription)
        if keep_keys:
            keys[sub_id] = (private, base64.urlsafe_b64decode(auth + "=="))
    return topic, subscriptions, keys


def decrypt(body: bytes, private_key, auth: bytes) -> bytes:
    """RFC 8291 aes128gcm decryption with the subscriber's keys (for verifying receipts)."""
    import http_ece

    return http_ece.decrypt(body, private_key=private_key, auth_secret=auth, version="aes128gcm")


# -- reporting ----------------------------------------------------------------------


def median(values):
    return statistics.median(values) if values else float("nan")


def percentile(values, p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))  # ceil
    return ordered[min(rank, len(ordered)) - 1]


def versions() -> dict:
    import importlib.metadata as md

    info = {"python": platform.python_version(), "machine": f"{platform.machine()} {os.cpu_count()} CPUs"}
    for name in ("pywebpush", "http_ece", "py-vapid", "cryptography", "aiohttp", "yarl", "httpx", "h2", "urllib3", "requests",
                 "rq", "redis", "flask", "gunicorn"):
        try:
            info[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    try:
        info["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    try:
        import redis

        info["redis-server"] = redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
    except Exception:
        pass
    try:
        from cryptography.hazmat.backends.openssl import backend

        info["openssl (cryptography)"] = backend.openssl_version_text()
    except Exception:
        pass
    return info


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_json(name: str, data) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    path.write_text(json.dumps(data, indent=2, default=str))
    return path

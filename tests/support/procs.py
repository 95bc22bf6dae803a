"""Real processes for fault tests: a private redis-server (AOF), the web and worker processes as the
Procfile starts them, with logs in files and clean-up that never leaves anything running.

    redis = RedisServer(tmp_path / "redis").start()      # free port, --appendonly yes, own dir
    redis.pause(); redis.resume()                        # SIGSTOP / SIGCONT
    redis.restart()                                      # same port and AOF dir
    env = service_env(redis.url(), upstream, vapid_key_file, PUSH_COALESCE_MS=2000)
    web = start_web(env, tmp_path)                       # `web:` line of the Procfile (gunicorn)
    worker = start_worker(env, tmp_path, redis.url())    # `worker:` line (davpush worker)
    worker.kill_group(signal.SIGKILL); worker.stop() -> returncode

Each process runs in its own session (process group), with cwd = the repository root and
PYTHONPATH = root + tests/, and `sys.executable` for `gunicorn` / `davpush`.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal as signals
import subprocess
import sys
import time
from pathlib import Path

import redis as redis_lib
import requests

from .env import service_settings
from .servers import free_port

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"

# Settings the service reads; inherited values are dropped so a test's environment is exactly its own.
SERVICE_VARIABLES = (
    "REDIS_URL", "UPSTREAM_URL", "UPSTREAM_FLAVOR", "DAV_PREFIX", "PUBLIC_URL", "WEBHOOK_SECRET",
    "VAPID_PRIVATE_KEY_FILE", "VAPID_PRIVATE_KEY", "VAPID_SUBJECT", "SECRET_KEY", "PUSH_ALLOW_HTTP",
    "PUSH_ALLOWED_NETWORKS", "SUBSCRIPTION_MAX_DAYS", "PUSH_TTL", "PUSH_URGENCY", "PUSH_COALESCE_MS",
    "PUSH_MIN_INTERVAL_MS", "PUSH_CONCURRENCY", "PUSH_PER_ORIGIN_CONCURRENCY", "PUSH_ORIGIN_CONCURRENCY",
    "PUSH_CONNECT_TIMEOUT", "PUSH_READ_TIMEOUT", "PUSH_MAX_ATTEMPTS", "PURGE_INTERVAL", "UPSTREAM_TIMEOUT",
    "UPSTREAM_VERIFY_TLS", "ADMIN_PASSWORD", "RQ_DASHBOARD_ALLOW_DELETE", "LOG_FORMAT", "LOG_LEVEL",
    "QUEUE_NAME", "REDIS_PREFIX", "PORT", "BIND_HOST", "WEB_CONCURRENCY", "WEB_THREADS",
    "REDIS_SOCKET_TIMEOUT", "PUSH_STRAGGLER_SECONDS", "FANOUT_LEASE_SECONDS", "PUSH_MAX_SUBSCRIPTIONS_PER_USER",
    "REDIS_SSL_CERT_REQS", "PUSH_PROXY", "FORWARDED_ALLOW_IPS", "GUNICORN_CMD_ARGS", "WEB_WORKER_CLASS",
    "WEB_CONNECTIONS", "REDIS_SENTINEL_PASSWORD", "WEBHOOK_SECRET_FILE", "SECRET_KEY_FILE", "ADMIN_PASSWORD_FILE",
)


def have_redis_server() -> bool:
    return shutil.which("redis-server") is not None


def service_env(redis_url: str, upstream_url: str, vapid_key_file: str, **overrides) -> dict:
    """The environment of a web or worker process (tests/conftest.py make_env's settings, for a
    loopback receiver). Keyword overrides win; a value of None removes the variable."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update({
        **service_settings(redis_url, upstream_url, vapid_key_file),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(TESTS), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    })
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def procfile_command(kind: str) -> list[str]:
    """argv for a Procfile line (`web`, `worker`), with this interpreter for gunicorn / davpush."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == kind:
            argv = shlex.split(command)
            if argv[0] == "gunicorn":
                return [sys.executable, "-m", "gunicorn", *argv[1:]]
            if argv[0] == "davpush":
                return [sys.executable, "-m", "app.cli", *argv[1:]]
            return argv
    raise KeyError(f"no {kind}: line in the Procfile")


def wait_for(predicate, timeout: float, interval: float = 0.05):
    """Poll until predicate() is truthy; returns its value, or None on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class ManagedProcess:
    """A child process in its own session; stdout and stderr go to files in `log_dir`."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path, cwd: Path = ROOT):
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / f"{name}.out"
        self.stderr_path = log_dir / f"{name}.err"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> ManagedProcess:
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll() if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            os.kill(self.proc.pid, sig)

    def kill_group(self, sig: int = signals.SIGKILL) -> None:
        """Signal the process and everything it started (its own process group)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 20.0, sig: int = signals.SIGTERM) -> int | None:
        """Ask it to stop (SIGTERM), SIGKILL the group after `timeout`; the exit status (negative: signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                self.kill_group(signals.SIGKILL)
                self.wait(10)
        self.kill_group(signals.SIGKILL)  # children left behind (gunicorn workers, RQ's scheduler)
        return self.proc.returncode

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        text = (self.stdout_text() + self.stderr_text()).splitlines()
        return f"--- last {lines} log lines of {self.name} (pid {self.proc.pid if self.proc else '-'}) ---\n" + "\n".join(text[-lines:])


class RedisServer:
    """A private redis-server with AOF persistence in `directory`, on a fixed port once started."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, **kwargs) -> redis_lib.Redis:
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 5)
        return redis_lib.Redis(host="127.0.0.1", port=self.port, **kwargs)

    def start(self) -> RedisServer:
        attempts = 5 if self.port is None else 1
        for _ in range(attempts):
            port = self.port or free_port()
            log = open(self.directory / "redis.log", "ab")
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                 "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
                 "--protected-mode", "no"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            if self._wait_ready(port):
                self.port = port
                self.paused = False
                self.starts += 1
                return self
            self.proc.kill()
            self.proc.wait(5)
        raise RuntimeError(f"redis-server did not start; log: {(self.directory / 'redis.log').read_text()[-2000:]}")

    def _wait_ready(self, port: int, timeout: float = 15.0) -> bool:
        client = redis_lib.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis_lib.RedisError:
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, nothing is answered."""
        os.kill(self.proc.pid, signals.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signals.SIGCONT)
        self.paused = False

    def stop(self, sig: int = signals.SIGTERM, timeout: float = 15.0) -> None:
        """Stop it (SIGTERM writes the AOF out; SIGKILL is a crash)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.paused = False

    def restart(self, down_seconds: float = 0.0, sig: int = signals.SIGTERM) -> None:
        """Stop, stay down for `down_seconds`, start again on the same port with the same AOF directory."""
        self.stop(sig)
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start_web(env: dict, log_dir: Path, name: str = "web", timeout: float = 60.0) -> WebProcess:
    port = free_port()
    web_env = dict(env, PORT=str(port), BIND_HOST="127.0.0.1")
    process = WebProcess(name, procfile_command("web"), web_env, log_dir, port)
    process.start()
    if not process.wait_ready(timeout):
        tail = process.tail()
        process.stop()
        raise RuntimeError(f"the web process did not answer on port {port} within {timeout} s\n{tail}")
    return process


class WebProcess(ManagedProcess):
    def __init__(self, name, argv, env, log_dir, port: int):
        super().__init__(name, argv, env, log_dir)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def wait_ready(self, timeout: float) -> bool:
        """Any HTTP answer from a path that touches neither Redis nor upstream."""
        def answered():
            if not self.alive:
                return "exited"
            try:
                requests.get(self.url + "/push/livez", timeout=2)
                return "ok"
            except requests.RequestException:
                return None
        return wait_for(answered, timeout, 0.1) == "ok"


def start_worker(env: dict, log_dir: Path, redis_url: str, name: str = "worker", timeout: float = 60.0,
                 args: tuple = ()) -> ManagedProcess:
    """`davpush worker` (the Procfile's worker line); returns once it is registered as an RQ worker."""
    process = ManagedProcess(name, procfile_command("worker") + list(args), env, log_dir).start()
    if not wait_worker_registered(redis_url, process, timeout):
        tail = process.tail()
        process.stop()
        raise RuntimeError(f"the worker did not register within {timeout} s\n{tail}")
    return process


def wait_worker_registered(redis_url: str, process: ManagedProcess, timeout: float) -> bool:
    from rq import Worker

    client = redis_lib.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)

    def registered():
        if not process.alive:
            return "exited"
        try:
            return "ok" if any(w.pid == process.pid for w in Worker.all(connection=client)) else None
        except redis_lib.RedisError:
            return None

    try:
        return wait_for(registered, timeout, 0.1) == "ok"
    finally:
        client.close()

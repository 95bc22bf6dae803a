"""`davpush up`: web, worker (with the RQ scheduler) and, when REDIS_URL is unset,
a private Redis that keeps its data (append-only file) in var/redis under the directory
`davpush up` is started in (the repository root for `./run.sh start`)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from ..core.config import ConfigError, load_settings
from ..web import gunicorn_command

PRIVATE_REDIS_DIR = Path("var", "redis")
PRIVATE_REDIS_SOCKET = "redis.sock"


def private_redis_url(directory: Path = PRIVATE_REDIS_DIR) -> str | None:
    """The Redis `davpush up` runs for this directory, if it is running (the CLI's default
    when REDIS_URL is unset)."""
    socket_path = directory.resolve() / PRIVATE_REDIS_SOCKET
    return f"unix://{socket_path}" if socket_path.is_socket() else None


def admin_pages(settings, port: str) -> list[str]:
    """Where the admin pages are and where their password comes from, for the start-up lines."""
    base = f"http://localhost:{port}"
    if not settings.admin_password:
        return [f"davpush: admin pages off ({base}/push/rq/, {base}/push/metrics): set ADMIN_PASSWORD to enable them"]
    source = (f"the file in ADMIN_PASSWORD_FILE ({os.environ['ADMIN_PASSWORD_FILE']})" if os.environ.get("ADMIN_PASSWORD_FILE")
              else "ADMIN_PASSWORD in the environment (for ./run.sh start: in .env)")
    return [f"davpush: dashboard {base}/push/rq/ and metrics {base}/push/metrics, user admin, password: {source}",
            f"davpush: health {base}/push/healthz"]


def start_private_redis(directory: Path) -> tuple[subprocess.Popen, str]:
    if shutil.which("redis-server") is None:
        raise ConfigError("REDIS_URL is not set and redis-server is not installed (apt install redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    socket_path = directory / PRIVATE_REDIS_SOCKET
    process = subprocess.Popen(
        [
            "redis-server", "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
            "--dir", str(directory), "--appendonly", "yes", "--save", "", "--logfile", str(directory / "redis.log"),
        ]
    )  # fmt: skip
    url = f"unix://{socket_path}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"the private redis-server exited; see {directory / 'redis.log'}")
        try:
            redis.Redis.from_url(url).ping()
            return process, url
        except (redis.ConnectionError, FileNotFoundError):
            time.sleep(0.1)
    process.terminate()
    raise ConfigError("the private redis-server did not start within 10 s")


def run_all() -> int:
    env = dict(os.environ)
    children: list[tuple[str, subprocess.Popen]] = []
    try:
        if not env.get("REDIS_URL"):
            data_dir = PRIVATE_REDIS_DIR.resolve()
            process, url = start_private_redis(data_dir)
            children.append(("redis", process))
            env["REDIS_URL"] = url
            print(f"davpush: private Redis at {url} (data in {data_dir})", flush=True)
        settings = load_settings(env)  # fail with one line before starting anything else
        env.setdefault("PORT", "8000")
        children.append(("web", subprocess.Popen(gunicorn_command(), env=env)))
        children.append(("worker", subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env)))
        print(f"davpush: web on :{env['PORT']}, worker with scheduler; upstream {settings.upstream_url}", flush=True)
        for line in admin_pages(settings, env["PORT"]):
            print(line, flush=True)
        return _supervise(children)
    except ConfigError as error:
        print(f"davpush: configuration error: {error}", file=sys.stderr)
        return 2
    finally:
        _stop([p for _, p in reversed(children)])


def _supervise(children) -> int:
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        while not stopping:
            for name, process in children:
                code = process.poll()
                if code is not None:
                    print(f"davpush: {name} exited with {code}; stopping the others", file=sys.stderr)
                    return code or 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    return 0


def _stop(processes) -> None:
    """Stop in the given order, each before the next (the worker before its Redis)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

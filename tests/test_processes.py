"""The process commands as an operator meets them, run with this checkout's code
(tests/test_packaging.py runs them from real installs)."""
import os
import subprocess
import sys
from pathlib import Path

from app.core.redis_connect import redis_client
from app.ops.supervisor import start_private_redis
from app.web import GUNICORN_SETTINGS, WSGI_APP

ROOT = Path(__file__).resolve().parent.parent
ONE_LINE = "davpush: configuration error: VAPID_PRIVATE_KEY_FILE="


def env_for(make_env, tmp_path, **overrides) -> dict:
    env = dict(os.environ, **make_env(VAPID_PRIVATE_KEY_FILE=str(tmp_path / "missing.pem"), PORT="0", **overrides))
    env["PYTHONPATH"] = str(ROOT)  # this checkout, from whatever directory the command runs in
    return env


def test_davpush_web_from_another_directory_refuses_bad_settings_with_one_line(make_env, tmp_path):
    result = subprocess.run([sys.executable, "-m", "app.cli", "web"], cwd=tmp_path, env=env_for(make_env, tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(ONE_LINE) and len(result.stderr.strip().splitlines()) == 1


def test_packaged_gunicorn_settings_refuse_bad_settings_with_one_line(make_env, tmp_path):
    """What gunicorn itself does with the packaged settings when started without `davpush web`'s check."""
    command = [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_SETTINGS), WSGI_APP]
    result = subprocess.run(command, cwd=tmp_path, env=env_for(make_env, tmp_path), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert ONE_LINE in result.stderr and "Traceback" not in result.stderr


def test_private_redis_of_davpush_up_serves_the_service_clients(tmp_path):
    process, url = start_private_redis(tmp_path / "redis")
    try:
        assert url == f"unix://{tmp_path / 'redis' / 'redis.sock'}"
        for timeout in (1.5, None):  # the service's clients, and the worker's blocking dequeue
            assert redis_client(url, timeout).ping()
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert any((tmp_path / "redis").glob("appendonly*"))

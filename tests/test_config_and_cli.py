"""Start-up validation and the CLI, as an operator meets them."""
import os
import subprocess
import sys

import pytest

from app.cli import main
from app.core.config import ConfigError, load_settings


def test_valid_settings_load(make_env):
    settings = load_settings(make_env(DAV_PREFIX="/remote.php/dav/", SUBSCRIPTION_MAX_DAYS="10"))
    assert settings.dav_prefix == "/remote.php/dav" and settings.subscription_max_days == 10



def test_per_origin_overrides_merge_over_the_large_services(make_env):
    env = make_env(PUSH_ORIGIN_CONCURRENCY="HTTPS://ntfy.example.org:443=8, https://fcm.googleapis.com=64")
    limits = dict(load_settings(env).push_origin_concurrency)
    assert limits["https://ntfy.example.org"] == 8
    assert limits["https://fcm.googleapis.com"] == 64
    assert limits["https://updates.push.services.mozilla.com"] == 256


@pytest.mark.parametrize(
    "change, variable",
    [
        ({"UPSTREAM_URL": ""}, "UPSTREAM_URL is not set"),
        ({"UPSTREAM_URL": "cloud.example.com"}, "UPSTREAM_URL"),
        ({"PUBLIC_URL": "https://user:pw@example.com"}, "PUBLIC_URL"),
        ({"WEBHOOK_SECRET": "short"}, "WEBHOOK_SECRET is too short"),
        ({"SECRET_KEY": "x"}, "SECRET_KEY"),
        ({"VAPID_PRIVATE_KEY_FILE": "/nonexistent/key.pem"}, "VAPID_PRIVATE_KEY_FILE"),
        ({"VAPID_SUBJECT": "admin@example.com"}, "VAPID_SUBJECT"),
        ({"VAPID_SUBJECT": "https://ops.example.org/contact"}, "VAPID_SUBJECT='https://ops.example.org/contact' cannot be signed"),
        ({"VAPID_SUBJECT": "https://ops.example.org:8443"}, "VAPID_SUBJECT"),
        ({"PUSH_ALLOW_HTTP": "maybe"}, "PUSH_ALLOW_HTTP"),
        ({"PUSH_ALLOWED_NETWORKS": "10.0.0.0/8,lan"}, "PUSH_ALLOWED_NETWORKS"),
        ({"SUBSCRIPTION_MAX_DAYS": "2"}, "SUBSCRIPTION_MAX_DAYS"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"PUSH_ORIGIN_CONCURRENCY": "https://ntfy.example.org/up=8"}, "PUSH_ORIGIN_CONCURRENCY"),
        ({"PUSH_ORIGIN_CONCURRENCY": "https://ntfy.example.org=0"}, "PUSH_ORIGIN_CONCURRENCY"),
    ],
)
def test_bad_settings_name_the_variable(make_env, change, variable):
    with pytest.raises(ConfigError) as caught:
        load_settings(make_env(**change))
    assert variable in str(caught.value)


def test_corrupt_key_file_is_a_config_error(make_env, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="VAPID_PRIVATE_KEY_FILE"):
        load_settings(make_env(VAPID_PRIVATE_KEY_FILE=str(bad)))


def run_cli(args, env):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True, timeout=60)


def test_worker_refuses_bad_config_with_one_line_and_no_traceback(make_env):
    env = dict(os.environ, **make_env(UPSTREAM_URL=""))
    result = run_cli(["worker", "--burst"], env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "davpush: configuration error: UPSTREAM_URL is not set (Nextcloud's internal address that davpush forwards to, "
        "e.g. http://127.0.0.1:8080 (not the public vhost that routes /remote.php/dav/ to davpush))"]


def test_gunicorn_refuses_missing_key_with_one_line(make_env, tmp_path):
    env = dict(os.environ, **make_env(VAPID_PRIVATE_KEY_FILE=str(tmp_path / "missing.pem")), PORT="0")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "davpush: configuration error: VAPID_PRIVATE_KEY_FILE=" in result.stderr


def test_vapid_generate_refuses_overwrite_and_show_prints_87_chars(tmp_path, capsys):
    key = tmp_path / "k.pem"
    assert main(["vapid", "generate", "--file", str(key)]) == 0
    original = key.read_bytes()
    assert main(["vapid", "generate", "--file", str(key)]) == 1
    assert key.read_bytes() == original
    capsys.readouterr()
    assert main(["vapid", "show", "--file", str(key)]) == 0
    shown = capsys.readouterr().out.strip()
    assert len(shown) == 87 and shown.startswith("B")
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_vapid_show_never_creates_a_key(tmp_path, capsys):
    missing = tmp_path / "none.pem"
    assert main(["vapid", "show", "--file", str(missing)]) == 1
    assert not missing.exists()

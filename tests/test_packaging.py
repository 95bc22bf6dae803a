"""davpush installed the ways it is deployed, each into a fresh virtualenv, then run with its
configuration from the environment alone:

- from wheels, with the same scripts the container build runs (tools/build-wheels.sh,
  tools/install-wheels.sh), started from a directory that has nothing of the source tree;
- as a Heroku-style buildpack does: `pip install -r requirements.txt` in the app directory, then
  the Procfile's commands there.

These build real wheels and virtualenvs (about a minute in all with pip's cache warm).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import requests
from packaging.utils import canonicalize_name

from support import bodies, dockerfile
from support.env import WEBHOOK_SECRET
from support.payloads import object_event
from support.processes import Service, clean_env, stop_all
from support.push_receiver import ClientKeys
from support.requirements_lock import read_lock
from support.servers import free_port

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
PUSH_NS = "https://bitfire.at/webdav-push"
# What a `git push` carries to the platform, less what a checkout never has.
NOT_IN_A_CHECKOUT = shutil.ignore_patterns(".git", ".venv", "var", "build", "*.egg-info", "__pycache__", ".env",
                                           ".pytest_cache", "out")
SERVICE_INSTALLED_WITH = {"pip", "setuptools", "davpush"}  # besides the pins


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def installer_env() -> dict:
    """The machine's pip settings (index, cache), without the test run's own virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    return dict(env, PYTHON=sys.executable, PIP_DISABLE_PIP_VERSION_CHECK="1")


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory) -> Path:
    """davpush installed from wheels by the container build's own scripts."""
    work = tmp_path_factory.mktemp("wheels")
    run(["sh", str(ROOT / "tools" / "build-wheels.sh"), str(work / "wheels")], env=installer_env(), timeout=600)
    run(["sh", str(ROOT / "tools" / "install-wheels.sh"), str(work / "wheels"), str(work / "venv")],
        env=installer_env(), timeout=600)
    return work / "venv"


@pytest.fixture
def settings(make_env, nextcloud, redis_client):
    """Everything the service needs, as environment variables; the port is free."""
    port = free_port()
    env = make_env(nextcloud.url, PORT=str(port), WEB_CONCURRENCY="1")
    return env, f"http://127.0.0.1:{port}"


def no_late_monkey_patching(web: Service) -> None:
    # gevent must patch ssl/socket before the service's modules import them (TLS to an https
    # upstream breaks otherwise); gevent says so when it comes too late.
    assert "MonkeyPatchWarning" not in web.output(), web.output()
    assert "Using worker: gevent" in web.output()


def register_and_push(base_url: str, receiver) -> None:
    """A registration as DAVx5 sends it, a Nextcloud webhook, and the push a phone decrypts."""
    keys = ClientKeys.generate()
    registered = requests.post(
        f"{base_url}/remote.php/dav/calendars/alice/work/",
        data=bodies.davx5_old(receiver.endpoint("/up/phone"), keys.p256dh, keys.auth),
        auth=("alice", "alice-pw"), headers={"Content-Type": bodies.XML_UTF8}, timeout=30,
    )
    assert registered.status_code == 201, registered.text
    accepted = requests.post(f"{base_url}/push/webhooks/nextcloud", data=json.dumps(object_event(kind="Updated", token=77)),
                             headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"}, timeout=30)
    assert accepted.status_code == 202, accepted.text
    [push] = receiver.wait_for(1, timeout=60)
    message = ET.fromstring(push.decrypt(keys))
    assert message.find(f"{{{PUSH_NS}}}content-update/{{DAV:}}sync-token").text == "http://sabre.io/ns/sync/77"


def test_installed_wheel_runs_web_and_worker_from_any_directory(wheel_venv, settings, receiver, tmp_path):
    env, base_url = settings
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir()
    davpush = str(wheel_venv / "bin" / "davpush")
    services = []
    try:
        services.append(Service("web", [davpush, "web"], cwd=elsewhere, env=clean_env(wheel_venv / "bin", **env), logs=tmp_path))
        services.append(Service("worker", [davpush, "worker"], cwd=elsewhere, env=clean_env(wheel_venv / "bin", **env), logs=tmp_path))
        health = services[0].wait_for_status(f"{base_url}/push/healthz", 200)
        assert {name for name, check in health.json()["checks"].items() if check["ok"]} >= {"redis", "vapid_key", "upstream", "workers"}
        register_and_push(base_url, receiver)
        image_healthcheck = [str(wheel_venv / "bin" / "python"), *dockerfile.healthcheck_command()[1:]]
        assert subprocess.run(image_healthcheck, env=clean_env(wheel_venv / "bin", **env), timeout=30).returncode == 0
    finally:
        codes = stop_all(services)
    assert codes == {"web": 0, "worker": 0}
    no_late_monkey_patching(services[0])
    assert list(elsewhere.iterdir()) == []  # nothing written into the working directory


def test_installed_wheel_runs_up_with_a_private_redis_in_the_working_directory(wheel_venv, settings):
    if shutil.which("redis-server") is None:
        pytest.fail("davpush up needs redis-server installed (apt install redis-server)")
    env, base_url = settings
    del env["REDIS_URL"]
    # short: the private Redis listens on a unix socket below it (paths are limited to ~100 bytes)
    workdir = Path(tempfile.mkdtemp(prefix="dp-up-"))
    try:
        up = Service("up", [str(wheel_venv / "bin" / "davpush"), "up"], cwd=workdir,
                     env=clean_env(wheel_venv / "bin", **env), logs=workdir)
        try:
            up.wait_for_status(f"{base_url}/push/healthz", 200)
            # the CLI, run where `up` runs and without REDIS_URL, finds the private Redis
            stats = subprocess.run([str(wheel_venv / "bin" / "davpush"), "subscriptions", "stats"], cwd=workdir,
                                   env=clean_env(wheel_venv / "bin", **env), capture_output=True, text=True, timeout=60)
            assert stats.returncode == 0, stats.stderr
            assert json.loads(stats.stdout)["live"] == 0
            assert "using the private Redis of `davpush up`" in stats.stderr
        finally:
            code = up.stop()
        assert code == 0, up.output()
        assert f"data in {workdir / 'var' / 'redis'}" in up.output()
        port = base_url.rsplit(":", 1)[1]
        assert (f"davpush: dashboard http://localhost:{port}/push/rq/ and metrics http://localhost:{port}/push/metrics, "
                "user admin, password: ADMIN_PASSWORD in the environment") in up.output()
        assert any((workdir / "var" / "redis").glob("appendonly*")), "the private Redis keeps an append-only file"
        no_late_monkey_patching(up)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_buildpack_install_runs_the_procfile_in_the_app_directory(settings, receiver, tmp_path):
    env, base_url = settings
    app_dir = tmp_path / "app"
    shutil.copytree(ROOT, app_dir, ignore=NOT_IN_A_CHECKOUT)
    venv = tmp_path / "buildpack-python"
    run([sys.executable, "-m", "venv", str(venv)], env=installer_env(), timeout=120)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--requirement", "requirements.txt"],
        cwd=app_dir, env=installer_env(), timeout=600)

    installed = json.loads(run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"], timeout=120).stdout)
    versions = {canonicalize_name(item["name"]): item["version"] for item in installed}
    pins, _, _ = read_lock()
    unpinned = {name: version for name, version in versions.items() if name not in pins and name not in SERVICE_INSTALLED_WITH}
    assert unpinned == {}, "installed without a pin in requirements.txt: run `python tools/lock_requirements.py`"
    assert {name: versions.get(name) for name in pins} == pins
    run([str(venv / "bin" / "python"), "-m", "pip", "check"], timeout=120)

    # The configuration app.json gives the platform, with the VAPID key in the environment.
    key = run([str(venv / "bin" / "davpush"), "vapid", "generate", "--stdout"], timeout=60).stdout.strip()
    del env["VAPID_PRIVATE_KEY_FILE"]
    env["VAPID_PRIVATE_KEY"] = key
    env.update({name: spec["value"] for name, spec in json.loads((ROOT / "app.json").read_text())["env"].items() if "value" in spec})
    processes = procfile()
    assert set(processes) == {"web", "worker", "release"}
    run_env = clean_env(venv / "bin", **env)
    release = subprocess.run(processes["release"], shell=True, cwd=app_dir, env=run_env, capture_output=True, text=True, timeout=120)
    assert release.returncode == 0, release.stdout + release.stderr
    services = []
    try:
        for name in ("web", "worker"):
            services.append(Service(name, ["sh", "-c", f"exec {processes[name]}"], cwd=app_dir, env=run_env, logs=tmp_path))
        services[0].wait_for_status(f"{base_url}/push/healthz", 200)
        register_and_push(base_url, receiver)
    finally:
        codes = stop_all(services)
    assert codes == {"web": 0, "worker": 0}
    no_late_monkey_patching(services[0])

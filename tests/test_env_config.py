"""Configuration from the environment alone (Heroku-style platforms, containers): the VAPID key
and secrets as values or `*_FILE`s, managed Redis over TLS, and CLI messages an operator can act on."""
import datetime
import os
import shutil
import subprocess
import sys
import time

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app import create_app
from app.cli import main
from app.core.config import ConfigError, load_settings
from app.core.services import build_services
from app.delivery.vapid import load_key, public_key_b64
from support.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_without_key_file(make_env, **overrides):
    env = make_env(**overrides)
    env.pop("VAPID_PRIVATE_KEY_FILE")
    return env


def test_vapid_key_from_the_environment_as_raw_base64url_or_pem(make_env, vapid_key_file, capsys):
    assert main(["vapid", "generate", "--stdout"]) == 0
    printed = capsys.readouterr()
    raw = printed.out.strip()
    assert "\n" not in raw and "public key: B" in printed.err
    from_raw = build_services(load_settings(env_without_key_file(make_env, VAPID_PRIVATE_KEY=raw)))
    assert printed.err.split("public key: ")[1].split()[0] == from_raw.signer.public_key

    pem = open(vapid_key_file).read()
    from_pem = build_services(load_settings(env_without_key_file(make_env, VAPID_PRIVATE_KEY=pem)))
    one_line = build_services(load_settings(env_without_key_file(make_env, VAPID_PRIVATE_KEY=pem.replace("\n", "\\n"))))
    assert from_pem.signer.public_key == one_line.signer.public_key == public_key_b64(load_key(vapid_key_file))
    assert from_pem.signer.authorization("https://push.example.org").startswith("vapid t=")


@pytest.mark.parametrize("overrides, message", [
    ({"VAPID_PRIVATE_KEY": "abc"}, "set exactly one of VAPID_PRIVATE_KEY"),  # and the file from make_env
    ({"VAPID_PRIVATE_KEY_FILE": ""}, "neither VAPID_PRIVATE_KEY nor VAPID_PRIVATE_KEY_FILE is set"),
])
def test_vapid_key_needs_exactly_one_source(make_env, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(make_env(**overrides))


@pytest.mark.parametrize("value", ["not-a-key", "AAAA", "-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----"])
def test_a_bad_vapid_key_in_the_environment_is_named(make_env, value):
    with pytest.raises(ConfigError, match="VAPID_PRIVATE_KEY"):
        load_settings(env_without_key_file(make_env, VAPID_PRIVATE_KEY=value))


def test_secrets_from_files(make_env, tmp_path):
    files = {}
    for name, value in (("WEBHOOK_SECRET", "w" * 20 + "1"), ("SECRET_KEY", "k" * 40 + "2"), ("ADMIN_PASSWORD", "p" * 14 + "3")):
        path = tmp_path / name.lower()
        path.write_text(value + "\n")  # a trailing newline, as `echo` writes it
        files[name] = (str(path), value)
    env = make_env()
    for name, (path, _) in files.items():
        env.pop(name, None)
        env[f"{name}_FILE"] = path
    settings = load_settings(env)
    assert (settings.webhook_secret, settings.secret_key, settings.admin_password) == tuple(v for _, v in files.values())
    assert "w" * 20 not in repr(settings) and "k" * 40 not in repr(settings)  # secrets stay out of reprs


def test_a_secret_and_its_file_together_are_refused(make_env, tmp_path):
    path = tmp_path / "s"
    path.write_text("x" * 40)
    with pytest.raises(ConfigError, match="set either WEBHOOK_SECRET or WEBHOOK_SECRET_FILE, not both"):
        load_settings(make_env(WEBHOOK_SECRET_FILE=str(path)))


@pytest.mark.parametrize("name, value", [
    ("WEBHOOK_SECRET", "change-me-to-a-long-random-string"),
    ("SECRET_KEY", "change-me-to-another-long-random-string-of-32-or-more-characters"),
    ("ADMIN_PASSWORD", "changeme-please-now"),
])
def test_the_examples_placeholder_secrets_are_refused(make_env, name, value):
    with pytest.raises(ConfigError, match=f"{name} still holds the example's placeholder"):
        load_settings(make_env(**{name: value}))


def test_every_placeholder_secret_of_the_shipped_example_is_refused(make_env):
    example = os.path.join(ROOT, "nextcloud_setup", "systemd", "davpush.env.example")
    values = dict(line.split("=", 1) for line in open(example).read().splitlines()
                  if "=" in line and not line.startswith("#"))
    for name in ("WEBHOOK_SECRET", "SECRET_KEY"):
        with pytest.raises(ConfigError, match="placeholder"):
            load_settings(make_env(**{name: values[name]}))


def _without_root_file_access() -> list[str]:
    """A command prefix under which file permissions apply even to root (tests run as root in CI)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
    drop = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", drop, "--inh-caps", drop]


def test_an_unreadable_key_file_says_permission_denied_with_owner_and_mode(make_env, tmp_path):
    import getpass

    key = tmp_path / "vapid.pem"
    assert main(["vapid", "generate", "--file", str(key)]) == 0
    os.chmod(key, 0o000)
    env = dict(os.environ, **make_env(VAPID_PRIVATE_KEY_FILE=str(key)), PYTHONPATH=ROOT)
    result = subprocess.run([*_without_root_file_access(), sys.executable, "-m", "app.cli", "check"], cwd="/", env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    me = getpass.getuser()
    group = __import__("grp").getgrgid(os.getegid()).gr_name
    assert (f"FAIL settings: VAPID_PRIVATE_KEY_FILE='{key}': permission denied "
            f"(owned by {me}:{group}, mode 0000; this process runs as {me})") in result.stdout
    assert "generate" not in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["subscriptions", "stats"], ["subscriptions", "list"], ["subscriptions", "purge"]])
def test_cli_commands_without_redis_say_where_and_why_in_one_line(make_env, command):
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    env = dict(os.environ, **make_env(REDIS_URL=url), PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "app.cli", *command], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert result.stderr.strip().splitlines() == [f"davpush: cannot use Redis at redis://127.0.0.1:{port}/0: Connection refused"]
    assert "hunter2" not in result.stderr + result.stdout


def test_check_names_redis_and_the_cause(make_env):
    env = dict(os.environ, **make_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/3"), PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "app.cli", "check"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    [line] = [text for text in result.stdout.splitlines() if text.startswith("FAIL redis")]
    assert "redis://127.0.0.1:" in line and "/3 unreachable: Connection refused" in line


# -- managed Redis over TLS with a self-signed certificate -------------------------------------------


def _self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "managed-redis.internal")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (directory / "redis.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "redis.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
    return directory / "redis.crt", directory / "redis.key"


@pytest.fixture
def tls_redis(tmp_path):
    cert, key = _self_signed(tmp_path)
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(cert),
                                "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
                                "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            redis.Redis.from_url(f"rediss://127.0.0.1:{port}/0", ssl_cert_reqs="none").ping()
            break
        except redis.RedisError:
            if process.poll() is not None:
                pytest.skip(f"redis-server without TLS support: {process.stderr.read().decode()[:200]}")
            time.sleep(0.1)
    yield f"rediss://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(timeout=10)


def test_self_signed_managed_redis_works_with_cert_reqs_none_in_every_client(make_env, tls_redis):
    from app.jobs.runtime import use_context
    from app.jobs.worker import run_worker

    with pytest.raises(redis.ConnectionError):
        build_services(load_settings(make_env(REDIS_URL=tls_redis))).redis.ping()  # verified by default

    settings = load_settings(make_env(REDIS_URL=tls_redis, REDIS_SSL_CERT_REQS="none"))
    services = build_services(settings)
    assert services.redis.ping()
    app = create_app(settings, services)
    assert app.redis_conn is services.redis  # the dashboard shares the service's client
    use_context(services)
    services.queue.enqueue("app.jobs.purge_expired")
    run_worker(burst=True)  # the worker's own dequeue connection and the scheduler
    assert services.queue.count == 0


def test_cert_reqs_takes_only_known_values(make_env):
    with pytest.raises(ConfigError, match="REDIS_SSL_CERT_REQS"):
        load_settings(make_env(REDIS_SSL_CERT_REQS="maybe"))


# -- probes and metrics ----------------------------------------------------------------------------------


def test_livez_answers_without_redis_or_upstream(make_env):
    settings = load_settings(make_env(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"))
    client = create_app(settings).test_client()
    response = client.get("/push/livez")
    assert response.status_code == 200 and response.data == b"ok\n"
    assert client.get("/push/healthz").status_code == 503


def test_metrics_have_one_charset_and_bounded_push_service_labels(make_services):
    from app.core.metrics_names import counter, push_service_label
    from support.env import ADMIN_PASSWORD

    assert push_service_label("https://fcm.googleapis.com/fcm/send/x") == "fcm"
    assert push_service_label("https://wns2-by3p.notify.windows.com/w/?token=x") == "windows"
    assert push_service_label("https://ntfy.example.org/up123") == "other"
    assert push_service_label("https://ntfy.sh?up=1") == "ntfy.sh"  # no path: the authority ends at "?"
    assert push_service_label("https://user@FCM.googleapis.com:443/x") == "fcm"
    assert push_service_label("https://fcm.googleapis.com.evil.example/x") == "other"
    assert push_service_label("not a url") == "other"
    services = make_services()
    services.store.count_many({counter("pushes", outcome="success", origin="fcm"): 3})
    client = create_app(services.settings, services).test_client()
    response = client.get("/push/metrics", auth=("admin", ADMIN_PASSWORD))
    assert response.status_code == 200
    assert response.headers["Content-Type"].count("charset") == 1
    assert b'davpush_pushes_total{origin="fcm",outcome="success"} 3.0' in response.data

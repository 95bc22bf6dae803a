"""The shipped Apache and Caddy layouts (full and method-split) pass the servers' own
configuration checks (`apache2 -t`, `caddy validate`), and the method-split variants route as
documented when run for real: GET, HEAD and REPORT under /remote.php/dav/ reach Nextcloud, every
other method reaches davpush, and the internal listener never does. davpush, PHP-FPM and
Nextcloud are recording stand-ins here (davpush itself is run behind nginx in
test_nginx_routing.py). Each test skips when its server is not installed (CI does not install
Apache or Caddy)."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
import requests

from support.nginx_layout import self_signed, wait_for_port
from support.servers import free_port, read_body, serve_wsgi

WEB = Path(__file__).resolve().parent.parent / "nextcloud_setup" / "webserver"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
# What the shipped files use: a2enmod ssl proxy proxy_http proxy_fcgi headers rewrite setenvif,
# plus the modules a Debian apache2 has enabled anyway (mpm, authz_core, alias, env).
MODULES = ["mpm_event", "authz_core", "alias", "env", "ssl", "proxy", "proxy_http", "proxy_fcgi", "headers",
           "rewrite", "setenvif"]
CERTIFICATE = "/etc/letsencrypt/live/cloud.example.com/fullchain.pem"
CERTIFICATE_KEY = "/etc/letsencrypt/live/cloud.example.com/privkey.pem"
DAVPUSH = "127.0.0.1:8000"
INTERNAL_PORT = "8080"
APACHE_PHP = 'SetHandler "proxy:unix:/run/php/php8.2-fpm.sock|fcgi://localhost"'
CADDY_PHP = """	php_fastcgi unix//run/php/php8.2-fpm.sock {
		env front_controller_active true
		env modHeadersAvailable true
	}
"""
HANG = 20

DIRECT = ["GET", "HEAD", "REPORT"]
THROUGH_DAVPUSH = ["PROPFIND", "OPTIONS", "POST", "PUT", "DELETE", "MOVE", "COPY", "PROPPATCH", "MKCOL",
                   "MKCALENDAR", "LOCK", "UNLOCK", "SEARCH", "ACL"]


def find(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    return f"/usr/sbin/{binary}" if os.access(f"/usr/sbin/{binary}", os.X_OK) else None


def substitute(text: str, replacements: dict[str, str], where: str) -> str:
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{where} no longer contains {old!r}: update {Path(__file__).name}")
        text = text.replace(old, new)
    return text


def apache_conf(directory: Path, site: str, modules: list[str] = MODULES) -> Path:
    loads = "".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so\n" for m in modules)
    conf = directory / "httpd.conf"
    conf.write_text(f"ServerRoot {directory}\nPidFile {directory}/httpd.pid\nErrorLog {directory}/error.log\n"
                    f"DefaultRuntimeDir {directory}\nServerName localhost\n{loads}{site}")
    return conf


def with_certificate(directory: Path, text: str, where: str) -> str:
    cert, key = self_signed(directory)
    return substitute(text, {CERTIFICATE: str(cert), CERTIFICATE_KEY: str(key)}, where)


# -- configuration checks -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["apache.conf", "apache-split.conf"])
def test_apache_layout_passes_apache2_t(tmp_path, name):
    apache = find("apache2")
    if apache is None or not APACHE_MODULES.is_dir():
        pytest.skip("apache2 is not installed")
    site = tmp_path / name
    site.write_text(with_certificate(tmp_path, (WEB / name).read_text(), name))
    result = subprocess.run([apache, "-t", "-f", str(apache_conf(tmp_path, f"Include {site}\n"))],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Syntax OK" in result.stderr + result.stdout


def caddy_env(directory: Path) -> dict:
    return dict(os.environ, HOME=str(directory), XDG_DATA_HOME=str(directory), XDG_CONFIG_HOME=str(directory))


@pytest.mark.parametrize("name", ["Caddyfile", "Caddyfile.split"])
def test_caddy_layout_passes_caddy_validate(tmp_path, name):
    caddy = find("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed")
    result = subprocess.run([caddy, "validate", "--config", str(WEB / name), "--adapter", "caddyfile"],
                            capture_output=True, text=True, timeout=60, env=caddy_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


# -- the method-split variants, run -------------------------------------------------------------


class Recorder:
    """A stand-in backend that records the methods and paths it receives."""

    def __init__(self, name: str):
        self.name = name
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self.handle = serve_wsgi(self)

    def __call__(self, environ, start_response):
        read_body(environ)
        with self._lock:
            self.seen.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")))
        body = self.name.encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    def methods(self) -> list[str]:
        with self._lock:
            return [method for method, _ in self.seen]

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()


class Running:
    def __init__(self, public: str, internal: str, stop, verify: str | bool = True):
        self.public, self.internal, self.stop = public, internal, stop
        self.verify = verify  # the test certificate of an https public server


def launch(command: list[str], output: Path, ports: list[int], log: Path, env: dict | None = None):
    """Start a server in the foreground and wait until it listens on `ports`; returns its stop()."""
    with open(output, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)

    def stop():
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    try:
        for port in ports:
            wait_for_port(port, process, lambda: log.read_text(errors="replace") if log.exists() else "")
    except BaseException:
        stop()
        raise
    return stop


def start_apache(directory: Path, davpush: Recorder, nextcloud: Recorder) -> Running:
    apache = find("apache2")
    if apache is None or not APACHE_MODULES.is_dir():
        pytest.skip("apache2 is not installed")
    public_port, internal_port = free_port(), free_port()
    www = directory / "www"
    www.mkdir()
    (www / "remote.php").write_text("<?php\n")
    (www / "status.php").write_text("<?php\n")
    site = substitute((WEB / "apache-split.conf").read_text(), {
        "Listen 127.0.0.1:8080": f"Listen 127.0.0.1:{internal_port}\nListen 127.0.0.1:{public_port} https",
        "<VirtualHost 127.0.0.1:8080>": f"<VirtualHost 127.0.0.1:{internal_port}>",
        "<VirtualHost *:443>": f"<VirtualHost 127.0.0.1:{public_port}>",
        "/var/www/nextcloud": str(www),
        f"http://{DAVPUSH}/": f"http://127.0.0.1:{davpush.handle.port}/",
        # PHP-FPM's stand-in: the handler proxy sends the script's file path, which is all the
        # recorder needs (which method reached "PHP").
        APACHE_PHP: f'SetHandler "proxy:http://127.0.0.1:{nextcloud.handle.port}"',
    }, "apache-split.conf")
    conf = apache_conf(directory, with_certificate(directory, site, "apache-split.conf"))
    stop = launch([apache, "-f", str(conf), "-DFOREGROUND"], directory / "apache.stderr",
                  [public_port, internal_port], directory / "error.log")
    return Running(f"https://127.0.0.1:{public_port}", f"http://127.0.0.1:{internal_port}", stop,
                   verify=str(directory / "cert.pem"))


def start_caddy(directory: Path, davpush: Recorder, nextcloud: Recorder) -> Running:
    caddy = find("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed")
    public_port, internal_port = free_port(), free_port()
    text = substitute((WEB / "Caddyfile.split").read_text(), {
        "cloud.example.com {": f"http://127.0.0.1:{public_port} {{",  # the routing, without certificates
        f"http://:{INTERNAL_PORT} {{": f"http://:{internal_port} {{",
        f"reverse_proxy {DAVPUSH} {{": f"reverse_proxy 127.0.0.1:{davpush.handle.port} {{",
        CADDY_PHP: f"\treverse_proxy 127.0.0.1:{nextcloud.handle.port}\n",  # PHP-FPM's stand-in
    }, "Caddyfile.split")
    config = directory / "Caddyfile"
    config.write_text("{\n\tadmin off\n}\n\n" + text)
    stop = launch([caddy, "run", "--config", str(config), "--adapter", "caddyfile"], directory / "caddy.log",
                  [public_port, internal_port], directory / "caddy.log", env=caddy_env(directory))
    return Running(f"http://127.0.0.1:{public_port}", f"http://127.0.0.1:{internal_port}", stop)


@pytest.fixture(scope="module", params=["apache", "caddy"])
def split(request):
    # Apache's workers drop root: everything they read must be readable by anyone.
    directory = Path(tempfile.mkdtemp(prefix=f"davpush-{request.param}-"))
    directory.chmod(0o755)
    davpush, nextcloud = Recorder("davpush"), Recorder("nextcloud")
    start = start_apache if request.param == "apache" else start_caddy
    try:
        running = start(directory, davpush, nextcloud)
    except BaseException:
        davpush.handle.stop()
        nextcloud.handle.stop()
        shutil.rmtree(directory, ignore_errors=True)
        raise
    yield running, davpush, nextcloud
    running.stop()
    davpush.handle.stop()
    nextcloud.handle.stop()
    shutil.rmtree(directory, ignore_errors=True)


def send(running: Running, method: str, url: str) -> requests.Response:
    """One request; a transport failure between the server and the werkzeug stand-ins is retried once.

    Under load, Caddy (seen about once in 4,000 requests) aborts a stand-in's answer after its
    headers ("use of closed network connection" on its own keep-alive socket): a transport quirk of
    the stand-ins, not routing. The retry can make a backend record a method twice in a row, so the
    routing assertions compare `distinct_in_order(...)`.
    """
    for attempt in (1, 2):
        try:
            return requests.request(method, url, data=b"<x/>" if method not in ("GET", "HEAD") else None,
                                    verify=running.verify, timeout=HANG, allow_redirects=False)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def distinct_in_order(methods: list[str]) -> list[str]:
    """`methods` with immediate repeats (a retried request) collapsed."""
    return [m for i, m in enumerate(methods) if i == 0 or methods[i - 1] != m]


def test_split_routes_get_head_report_to_nextcloud_and_the_rest_to_davpush(split):
    running, davpush, nextcloud = split
    davpush.clear()
    nextcloud.clear()
    for method in DIRECT + THROUGH_DAVPUSH:
        response = send(running, method, running.public + "/remote.php/dav/calendars/alice/work/")
        assert response.status_code == 200, (method, response.status_code, response.text)
    assert distinct_in_order(nextcloud.methods()) == DIRECT
    assert distinct_in_order(davpush.methods()) == THROUGH_DAVPUSH
    assert {path for _, path in davpush.seen} == {"/remote.php/dav/calendars/alice/work/"}


def test_split_sends_push_and_the_bare_dav_root_to_davpush_even_for_get(split):
    running, davpush, nextcloud = split
    davpush.clear()
    nextcloud.clear()
    assert send(running, "GET", running.public + "/push/healthz").text == "davpush"
    assert send(running, "GET", running.public + "/remote.php/dav").text == "davpush"
    assert send(running, "GET", running.public + "/status.php").text == "nextcloud"
    assert davpush.methods().count("GET") >= 2 and set(davpush.methods()) == {"GET"}
    assert nextcloud.methods() in (["GET"], ["GET", "GET"])


def test_split_internal_listener_never_reaches_davpush(split):
    running, davpush, nextcloud = split
    davpush.clear()
    nextcloud.clear()
    for method in ["PROPFIND", "PUT", "GET", "REPORT", "OPTIONS"]:
        assert send(running, method, running.internal + "/remote.php/dav/calendars/alice/work/").text == "nextcloud"
    assert davpush.methods() == []

"""Run the shipped nginx layout (nextcloud_setup/webserver/nginx/) in a real nginx for tests.

The shipped files are used as they are; only addresses and paths are substituted (each
substitution must match, so a change to the shipped files that the tests no longer cover fails
loudly), IPv6 listens are dropped, and the PHP-FPM part (snippets/nextcloud-php.conf) is replaced
by a proxy to the Nextcloud stand-in. nginx runs unprivileged-port, in the foreground, with all
its files in one temporary directory.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .servers import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "nextcloud_setup" / "webserver" / "nginx"
SITE = "sites-available/nextcloud.conf"
SPLIT_SITE = "sites-available/nextcloud-split.conf"  # GET, HEAD, REPORT under /remote.php/dav/ skip davpush
PHP_PART = "snippets/nextcloud-php.conf"

# The values in the shipped files that an installation adapts (and the tests do).
DAVPUSH_SERVER = "server 127.0.0.1:8000;"
INTERNAL_LISTEN = "listen 127.0.0.1:8080;"
PUBLIC_LISTEN = "listen 443 ssl;"
REDIRECT_LISTEN = "listen 80;"
CERTIFICATE = "/etc/letsencrypt/live/cloud.example.com/fullchain.pem"
CERTIFICATE_KEY = "/etc/letsencrypt/live/cloud.example.com/privkey.pem"
NEXTCLOUD_ROOT = "root /var/www/nextcloud;"

# Stands in for PHP-FPM: the same streaming choices as the fastcgi part it replaces.
STUB_PHP_PART = """\
# Test stand-in for PHP-FPM: the Nextcloud stub over HTTP.
proxy_pass http://127.0.0.1:{port};
proxy_http_version 1.1;
proxy_set_header Host $http_host;
proxy_request_buffering off;
proxy_max_temp_file_size 0;
proxy_read_timeout 3600s;
"""

HARNESS = """\
{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
events {{ worker_connections 512; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/temp/body;
    proxy_temp_path {dir}/temp/proxy;
    fastcgi_temp_path {dir}/temp/fastcgi;
    uwsgi_temp_path {dir}/temp/uwsgi;
    scgi_temp_path {dir}/temp/scgi;
    include {site};
}}
"""


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def substitute(text: str, replacements: dict[str, str], where: str) -> str:
    for old, new in replacements.items():
        if old not in text:
            raise AssertionError(f"{where} no longer contains {old!r}: update tests/support/nginx_layout.py")
        text = text.replace(old, new)
    return text


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for cloud.example.com and 127.0.0.1 (its own CA) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloud.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("cloud.example.com"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Ports:
    public: int  # the shipped 443 server
    redirect: int  # the shipped 80 server
    internal: int  # the shipped 127.0.0.1:8080 server (davpush's UPSTREAM_URL)
    davpush: int  # the shipped `upstream davpush` (gunicorn)

    @classmethod
    def pick(cls, davpush: int | None = None) -> Ports:
        return cls(free_port(), free_port(), free_port(), davpush or free_port())


def render(directory: Path, ports: Ports, stub_port: int, *, php_part: str | None = None, site: str = SITE) -> Path:
    """Write the shipped layout with test addresses into `directory`; returns the harness nginx.conf.

    `php_part`: the text of snippets/nextcloud-php.conf (default: a proxy to the stub on `stub_port`).
    `site`: which of the shipped sites to run (SITE or SPLIT_SITE).
    """
    cert, key = self_signed(directory)
    www = directory / "www"
    www.mkdir(exist_ok=True)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / "temp" / sub).mkdir(parents=True, exist_ok=True)
    shutil.copytree(SHIPPED, directory, dirs_exist_ok=True)
    site_name, site = site, directory / site
    text = site.read_text()
    text, dropped = re.subn(r"(?m)^[ \t]*listen \[::\]:\d+[^\n]*\n", "", text)  # IPv6 may be missing here
    if dropped != 2:
        raise AssertionError(f"{site_name}: expected 2 IPv6 listens, found {dropped}")
    site.write_text(substitute(text, {
        REDIRECT_LISTEN: f"listen 127.0.0.1:{ports.redirect};",
        PUBLIC_LISTEN: f"listen 127.0.0.1:{ports.public} ssl;",
        INTERNAL_LISTEN: f"listen 127.0.0.1:{ports.internal};",
        DAVPUSH_SERVER: f"server 127.0.0.1:{ports.davpush};",
        CERTIFICATE: str(cert),
        CERTIFICATE_KEY: str(key),
    }, site_name))
    nextcloud = directory / "snippets" / "nextcloud.conf"
    nextcloud.write_text(substitute(nextcloud.read_text(), {NEXTCLOUD_ROOT: f"root {www};"}, "snippets/nextcloud.conf"))
    (directory / PHP_PART).write_text(php_part if php_part is not None else STUB_PHP_PART.format(port=stub_port))
    conf = directory / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would otherwise switch to www-data
    conf.write_text(HARNESS.format(user=user, dir=directory, site=site))
    return conf


def check_config(binary: str, conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "-t", "-p", str(conf.parent), "-c", str(conf), "-e", "stderr"],
                          capture_output=True, text=True, timeout=30)


class Nginx:
    """nginx in the foreground on a rendered layout; `.public` is the https base URL."""

    def __init__(self, binary: str, conf: Path, ports: Ports):
        self.conf = conf
        self.ports = ports
        self.public = f"https://127.0.0.1:{ports.public}"
        self.redirect = f"http://127.0.0.1:{ports.redirect}"
        self.internal = f"http://127.0.0.1:{ports.internal}"
        self.certificate = str(conf.parent / "cert.pem")
        checked = check_config(binary, conf)
        if checked.returncode != 0:
            raise AssertionError(f"nginx -t failed:\n{checked.stderr}")
        self._log = open(conf.parent / "nginx.stderr", "wb")
        self.process = subprocess.Popen(
            [binary, "-p", str(conf.parent), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        wait_for_port(ports.public, self.process, self.error_log)

    def error_log(self) -> str:
        path = self.conf.parent / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def wait_for_port(port: int, process: subprocess.Popen, describe, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}: {describe()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}: {describe()}")


class Gunicorn:
    """davpush's web process as the Procfile runs it (`gunicorn wsgi:app`, gunicorn.conf.py)."""

    def __init__(self, env: dict, port: int, directory: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = directory / f"gunicorn-{port}.log"
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ, **env, PORT=str(port), BIND_HOST="127.0.0.1", WEB_CONCURRENCY="1")
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=ROOT,
                                        env=full_env, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_until_answering()

    def _wait_until_answering(self, seconds: float = 60.0) -> None:
        """Until davpush itself answers (not merely something on the port: a free port may be taken)."""
        import requests

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.process.returncode}: {self.log()}")
            try:
                if "checks" in requests.get(self.url + "/push/healthz", timeout=5).json():
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"davpush did not answer on port {self.port}: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pid(self) -> int:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        if len(children) != 1:
            raise AssertionError(f"expected one gunicorn worker, found {children}")
        return int(children[0])

    def stop(self, timeout: float = 20.0) -> bool:
        """SIGTERM; True when gunicorn exited within `timeout`."""
        stopped = True
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stopped = False
                self.process.kill()
                self.process.wait()
        self._log.close()
        return stopped


def memory_kib(pid: int, field: str) -> int:
    """VmRSS / VmHWM of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def reset_peak_memory(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux clear_refs 5); False where not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False

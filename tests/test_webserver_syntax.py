"""The shipped Apache and Caddy layouts (full and method-split) pass the servers' own
configuration checks: `apache2 -t` and `caddy validate`. Each skips when its server is not
installed (CI does not install them; nginx is run for real in test_nginx_routing.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.nginx_layout import self_signed

WEB = Path(__file__).resolve().parent.parent / "nextcloud_setup" / "webserver"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
# What the shipped files use: a2enmod ssl proxy proxy_http proxy_fcgi headers rewrite setenvif,
# plus the modules a Debian apache2 has enabled anyway (mpm, authz_core, alias, env).
MODULES = ["mpm_event", "authz_core", "alias", "env", "ssl", "proxy", "proxy_http", "proxy_fcgi", "headers",
           "rewrite", "setenvif"]
CERTIFICATE = "/etc/letsencrypt/live/cloud.example.com/fullchain.pem"
CERTIFICATE_KEY = "/etc/letsencrypt/live/cloud.example.com/privkey.pem"


def find(binary: str) -> str | None:
    found = shutil.which(binary)
    if found:
        return found
    return f"/usr/sbin/{binary}" if os.access(f"/usr/sbin/{binary}", os.X_OK) else None


@pytest.mark.parametrize("name", ["apache.conf", "apache-split.conf"])
def test_apache_layout_passes_apache2_t(tmp_path, name):
    apache = find("apache2")
    if apache is None or not APACHE_MODULES.is_dir():
        pytest.skip("apache2 is not installed")
    cert, key = self_signed(tmp_path)
    site = (WEB / name).read_text()
    assert CERTIFICATE in site and CERTIFICATE_KEY in site
    (tmp_path / name).write_text(site.replace(CERTIFICATE, str(cert)).replace(CERTIFICATE_KEY, str(key)))
    loads = "".join(f"LoadModule {m}_module {APACHE_MODULES}/mod_{m}.so\n" for m in MODULES)
    conf = tmp_path / "httpd.conf"
    conf.write_text(f"ServerRoot {tmp_path}\nPidFile {tmp_path}/httpd.pid\nErrorLog {tmp_path}/error.log\n"
                    f"DefaultRuntimeDir {tmp_path}\nServerName localhost\n{loads}Include {tmp_path / name}\n")
    result = subprocess.run([apache, "-t", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "Syntax OK" in result.stderr + result.stdout


@pytest.mark.parametrize("name", ["Caddyfile", "Caddyfile.split"])
def test_caddy_layout_passes_caddy_validate(tmp_path, name):
    caddy = find("caddy")
    if caddy is None:
        pytest.skip("caddy is not installed")
    env = dict(os.environ, HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run([caddy, "validate", "--config", str(WEB / name), "--adapter", "caddyfile"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr

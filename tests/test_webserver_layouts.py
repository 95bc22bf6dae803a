"""The shipped web server layouts agree with davpush.env.example: davpush's UPSTREAM_URL is an
internal listener without davpush routes, never the public server that routes DAV to davpush.
(nginx is also run for real: test_nginx_routing.py. Apache and Caddy are checked as text here.)"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "nextcloud_setup" / "webserver"


def env_example() -> dict[str, str]:
    lines = (ROOT / "nextcloud_setup" / "systemd" / "davpush.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


ENV = env_example()
UPSTREAM = urlsplit(ENV["UPSTREAM_URL"])
INTERNAL = f"{UPSTREAM.hostname}:{UPSTREAM.port}"
DAVPUSH = f"{ENV['BIND_HOST']}:{ENV['PORT']}"


def blocks(text: str, opener: str) -> list[tuple[str, str]]:
    """Top-level brace blocks whose header matches `opener` (a regex): (header, body) pairs."""
    found = []
    for match in re.finditer(rf"(?m)^({opener})\s*\{{", text):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        found.append((match.group(1).strip(), text[match.end():i - 1]))
    return found


def test_env_example_points_at_an_internal_listener_not_the_public_site():
    assert ENV["UPSTREAM_URL"] == "http://127.0.0.1:8080"
    assert urlsplit(ENV["PUBLIC_URL"]).hostname != UPSTREAM.hostname


def test_nginx_internal_server_has_no_davpush_routes():
    site = (WEB / "nginx" / "sites-available" / "nextcloud.conf").read_text()
    servers = [body for _, body in blocks(site, r"server")]
    internal = [s for s in servers if f"listen {INTERNAL};" in s]
    public = [s for s in servers if "listen 443 ssl;" in s]
    assert len(internal) == 1 and len(public) == 1
    assert "proxy_pass" not in internal[0] and "include snippets/nextcloud.conf;" in internal[0]
    for location in ("location ^~ /remote.php/dav/", "location = /remote.php/dav", "location ^~ /push/"):
        assert f"{location} {{\n        proxy_pass http://davpush;" in public[0]
    assert f"server {DAVPUSH};" in dict(blocks(site, r"upstream davpush"))["upstream davpush"]


def test_apache_internal_virtualhost_has_no_davpush_routes():
    conf = (WEB / "apache.conf").read_text()
    assert f"Listen {INTERNAL}" in conf.splitlines()
    internal = conf.split(f"<VirtualHost {INTERNAL}>", 1)[1].split("</VirtualHost>", 1)[0]
    public = conf.split("<VirtualHost *:443>", 1)[1].split("</VirtualHost>", 1)[0]
    assert "ProxyPass" not in internal and "DocumentRoot /var/www/nextcloud" in internal
    assert f'ProxyPass        "/remote.php/dav/" "http://{DAVPUSH}/remote.php/dav/"' in public
    assert f'ProxyPass        "/push/" "http://{DAVPUSH}/push/"' in public


def test_caddy_internal_site_has_no_davpush_routes():
    conf = (WEB / "Caddyfile").read_text()
    sites = dict(blocks(conf, r"[^\s#(][^\n{]*"))
    internal = sites[f"http://:{UPSTREAM.port}"]
    assert f"bind {UPSTREAM.hostname}" in internal and "import nextcloud" in internal
    assert "reverse_proxy" not in internal
    public = sites["cloud.example.com"]
    assert "@davpush path /remote.php/dav /remote.php/dav/* /push/*" in public
    assert f"reverse_proxy {DAVPUSH}" in public

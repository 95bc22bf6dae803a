"""The shipped web server layouts agree with davpush.env.example: davpush's UPSTREAM_URL is an
internal listener without davpush routes, never the public server that routes DAV to davpush.
The method-split variants bypass davpush for exactly GET, HEAD and REPORT and are otherwise the
full layouts. (nginx is also run for real: test_nginx_routing.py. Apache and Caddy are checked as
text here.)"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.gateway.writes import WRITE_METHODS

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


# -- the method-split variants ------------------------------------------------------------------

# (full layout, its method-split variant, lines of the full layout the variant replaces)
SPLIT_VARIANTS = {
    "nginx": ("nginx/sites-available/nextcloud.conf", "nginx/sites-available/nextcloud-split.conf", set()),
    "apache": ("apache.conf", "apache-split.conf", set()),
    "caddy": ("Caddyfile", "Caddyfile.split", {"\t@davpush path /remote.php/dav /remote.php/dav/* /push/*"}),
}
# What davpush itself acts on: sending any of these past it loses push properties, registrations
# or the push that follows a write.
DAVPUSH_ACTS_ON = {"PROPFIND", "OPTIONS", "POST"} | set(WRITE_METHODS)


def split_methods(server: str) -> set[str]:
    """The methods the split variant sends under /remote.php/dav/ straight to Nextcloud."""
    text = (WEB / SPLIT_VARIANTS[server][1]).read_text()
    if server == "nginx":
        public = next(body for _, body in blocks(text, r"server") if "listen 443 ssl;" in body)
        dav = public.split("location ^~ /remote.php/dav/ {", 1)[1].split("\n    }", 1)[0]
        (methods,) = re.findall(r"if \(\$request_method ~ \^\(([A-Z|]+)\)\$\) \{\s*return 418;", dav)
        assert "error_page 418 = @nextcloud-dav;" in dav
        return set(methods.split("|"))
    if server == "apache":
        public = text.split("<VirtualHost *:443>", 1)[1].split("</VirtualHost>", 1)[0]
        (methods,) = re.findall(r'SetEnvIfExpr "%\{REQUEST_METHOD\} =~ /\^\(([A-Z|]+)\)\$/ && '
                                r'%\{REQUEST_URI\} =~ m#\^/remote\\\.php/dav/#" no-proxy', public)
        return set(methods.split("|"))
    public = dict(blocks(text, r"[^\s#(][^\n{]*"))["cloud.example.com"]
    (methods,) = re.findall(r"@davpush \{\s*path /remote\.php/dav /remote\.php/dav/\* /push/\*\s*"
                            r"not \{\s*path /remote\.php/dav/\*\s*method ([A-Z ]+?)\s*\}\s*\}", public)
    return set(methods.split())


@pytest.mark.parametrize("server", sorted(SPLIT_VARIANTS))
def test_split_variant_bypasses_davpush_only_for_get_head_report(server):
    methods = split_methods(server)
    assert methods == {"GET", "HEAD", "REPORT"}
    assert not methods & DAVPUSH_ACTS_ON


def body_lines(text: str) -> list[str]:
    """The lines after the leading comment block (the description each file starts with)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    return lines[start:]


@pytest.mark.parametrize("server", sorted(SPLIT_VARIANTS))
def test_split_variant_is_the_full_layout_plus_the_split(server):
    """Every line of the full layout, in order, is in its split variant (except the lines the
    split replaces): a fix to the full layout that is not carried over fails here."""
    full_name, split_name, replaced = SPLIT_VARIANTS[server]
    split = iter(body_lines((WEB / split_name).read_text()))
    for line in body_lines((WEB / full_name).read_text()):
        if line in replaced:
            continue
        assert any(candidate == line for candidate in split), f"{split_name} lacks, or reorders, {line!r} of {full_name}"


def test_nginx_split_internal_server_has_no_davpush_routes():
    site = (WEB / "nginx" / "sites-available" / "nextcloud-split.conf").read_text()
    servers = [body for _, body in blocks(site, r"server")]
    (internal,) = [s for s in servers if f"listen {INTERNAL};" in s]
    assert "proxy_pass" not in internal and "error_page" not in internal
    assert "include snippets/nextcloud.conf;" in internal
    assert f"server {DAVPUSH};" in dict(blocks(site, r"upstream davpush"))["upstream davpush"]


def test_apache_split_internal_virtualhost_has_no_davpush_routes():
    conf = (WEB / "apache-split.conf").read_text()
    internal = conf.split(f"<VirtualHost {INTERNAL}>", 1)[1].split("</VirtualHost>", 1)[0]
    assert "ProxyPass" not in internal and "no-proxy" not in internal
    assert f'ProxyPass        "/remote.php/dav/" "http://{DAVPUSH}/remote.php/dav/"' in conf


def test_caddy_split_internal_site_has_no_davpush_routes():
    sites = dict(blocks((WEB / "Caddyfile.split").read_text(), r"[^\s#(][^\n{]*"))
    internal = sites[f"http://:{UPSTREAM.port}"]
    assert f"bind {UPSTREAM.hostname}" in internal and "import nextcloud" in internal
    assert "reverse_proxy" not in internal
    assert f"reverse_proxy {DAVPUSH}" in sites["cloud.example.com"]

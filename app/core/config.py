"""Typed settings read from the environment and validated once at start-up.

Every problem is reported as a ConfigError naming the variable, so the entry
points can print one line and exit non-zero instead of a traceback.
"""
from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..net.ssrf import BlockedEndpoint, IPNetwork, check_shape
from ..nextcloud import paths as nextcloud_paths
from .config_sources import SourceError, is_placeholder, read_file, value_or_file
from .redis_connect import RedisUrlError, check_url

# Push services built for heavy fan-in from one sender get more requests in flight
# than PUSH_PER_ORIGIN_CONCURRENCY; small self-hosted ones keep the low default.
LARGE_PUSH_SERVICES = (
    ("https://fcm.googleapis.com", 256),
    ("https://updates.push.services.mozilla.com", 256),
    ("https://web.push.apple.com", 256),
)


class ConfigError(Exception):
    """A setting is missing or invalid. str(error) is the one line to print."""


@dataclass(frozen=True)
class Settings:
    redis_url: str
    upstream_url: str
    public_url: str
    webhook_secret: str = field(repr=False)
    vapid_private_key_file: str  # "" when the key comes from VAPID_PRIVATE_KEY
    vapid_subject: str
    secret_key: str = field(repr=False)
    dav_prefix: str = nextcloud_paths.DAV_PREFIX
    upstream_flavor: str = "nextcloud"
    upstream_timeout: float = 300.0
    upstream_verify_tls: bool = True
    push_allow_http: bool = False
    push_allowed_networks: tuple[IPNetwork, ...] = ()
    subscription_max_days: int = 7
    push_max_subscriptions_per_user: int = 250
    push_ttl: int = 86400
    push_urgency: str = "normal"
    push_coalesce_ms: int = 0
    push_min_interval_ms: int = 1000
    push_concurrency: int = 256
    push_per_origin_concurrency: int = 32
    push_origin_concurrency: tuple = LARGE_PUSH_SERVICES
    push_connect_timeout: float = 5.0
    push_read_timeout: float = 10.0
    push_max_attempts: int = 8
    push_straggler_seconds: float = 0.5
    push_keepalive_seconds: float = 30.0
    push_proxy: str = field(default="", repr=False)  # may hold credentials: never logged
    fanout_lease_seconds: int = 15
    redis_socket_timeout: float = 1.5
    purge_interval: int = 600
    admin_password: str = field(default="", repr=False)
    dashboard_allow_delete: bool = False
    log_format: str = "text"
    log_level: str = "INFO"
    queue_name: str = "davpush"
    redis_prefix: str = "dp:"
    redis_ssl_cert_reqs: str = "required"
    redis_sentinel_password: str = field(default="", repr=False)
    vapid_private_key_pem: str = field(default="", repr=False)

    @property
    def public_base(self) -> str:
        return self.public_url.rstrip("/")


def _required(env: Mapping[str, str], name: str, meaning: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set ({meaning})")
    return value


def _http_url(env: Mapping[str, str], name: str, meaning: str) -> str:
    value = _required(env, name, meaning)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name}={value!r} is not an absolute http(s) URL ({meaning})")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{name} must not contain credentials, a query or a fragment")
    return value.rstrip("/")


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true or false)")


def _number(env: Mapping[str, str], name: str, default, cast: Callable, low, high):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw} is out of range ({low}..{high})")
    return value


def _origin_limits(env: Mapping[str, str], name: str) -> tuple:
    """`origin=N` pairs, merged over the built-in limits of the large push services."""
    limits = dict(LARGE_PUSH_SERVICES)
    raw = env.get(name, "").strip()
    for item in raw.replace(";", ",").replace(" ", ",").split(","):
        if not item:
            continue
        origin, sep, number = item.rpartition("=")
        try:
            endpoint = check_shape(origin, allow_http=True)
        except BlockedEndpoint:
            endpoint = None
        if not sep or endpoint is None or origin.rstrip("/").count("/") > 2 or "?" in origin:
            raise ConfigError(f"{name}: {item!r} is not origin=N (e.g. https://ntfy.example.org=8)")
        if not number.isdigit() or not 1 <= int(number) <= 1024:
            raise ConfigError(f"{name}: the limit in {item!r} must be a number from 1 to 1024")
        limits[endpoint.origin] = int(number)
    return tuple(sorted(limits.items()))


def _networks(env: Mapping[str, str], name: str) -> tuple:
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    networks = []
    for item in raw.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP network (e.g. 192.168.1.0/24)") from None
    return tuple(networks)


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple) -> str:
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of {', '.join(choices)}")
    return raw


def _vapid_subject(env: Mapping[str, str]) -> str:
    value = _required(env, "VAPID_SUBJECT", "contact for push services, mailto:admin@example.com or an https: URL")
    if not (value.startswith("mailto:") and "@" in value) and not value.startswith("https://"):
        raise ConfigError(f"VAPID_SUBJECT={value!r} must be a mailto: address or an https: URL")
    from ..delivery.vapid import subject_accepted

    if not subject_accepted(value):
        raise ConfigError(f"VAPID_SUBJECT={value!r} cannot be signed: use mailto:you@example.com "
                          "or a bare https://host (no path, port or trailing slash)")
    return value


def vapid_key_from(env: Mapping[str, str]) -> tuple[str, str]:
    """(the key as PKCS#8 PEM, its file or ""): from VAPID_PRIVATE_KEY (PEM text or base64url raw
    key, for platforms without a persistent disk) or VAPID_PRIVATE_KEY_FILE, exactly one of them."""
    from ..delivery.vapid import VapidKeyError, key_pem, parse_key

    direct = env.get("VAPID_PRIVATE_KEY", "").strip()
    path = env.get("VAPID_PRIVATE_KEY_FILE", "").strip()
    if direct and path:
        raise ConfigError("set exactly one of VAPID_PRIVATE_KEY (the key itself) and VAPID_PRIVATE_KEY_FILE "
                          "(a PEM file), not both")
    if not direct and not path:
        raise ConfigError("neither VAPID_PRIVATE_KEY nor VAPID_PRIVATE_KEY_FILE is set: create the key once with "
                          "`davpush vapid generate --file PATH` (or `--stdout` for VAPID_PRIVATE_KEY)")
    if path:
        if not os.path.exists(path):
            raise ConfigError(f"VAPID_PRIVATE_KEY_FILE={path!r} does not exist "
                              f"(create it once with `davpush vapid generate --file {path}`)")
        try:
            data = read_file(path, "VAPID_PRIVATE_KEY_FILE")
        except SourceError as error:
            raise ConfigError(str(error)) from None
    else:
        data = direct.replace("\\n", "\n").encode("utf-8")  # PEM pasted into one line with literal \n
    try:
        return key_pem(parse_key(data, "VAPID_PRIVATE_KEY_FILE" if path else "VAPID_PRIVATE_KEY")), path
    except VapidKeyError as error:
        raise ConfigError(str(error)) from None  # parse_key's messages name the setting (its `source`)


def _dav_prefix(env: Mapping[str, str]) -> str:
    raw = env.get("DAV_PREFIX", nextcloud_paths.DAV_PREFIX).strip()
    prefix = "/" + raw.strip("/") if raw.strip("/") else ""
    if "?" in prefix or "#" in prefix or "//" in prefix:
        raise ConfigError(f"DAV_PREFIX={raw!r} must be a plain path such as /remote.php/dav")
    return prefix


def _secret(env: Mapping[str, str], name: str, meaning: str, minimum: int, required: bool = True) -> str:
    """A secret from NAME or NAME_FILE: long enough and not an example's placeholder."""
    try:
        value, source = value_or_file(env, name)
    except SourceError as error:
        raise ConfigError(str(error)) from None
    if not value:
        if required:
            raise ConfigError(f"{name} (or {name}_FILE) is not set ({meaning})")
        return ""
    if is_placeholder(value):
        raise ConfigError(f"{source} still holds the example's placeholder: set a random value "
                          "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')")
    if len(value) < minimum:
        raise ConfigError(f"{name} is too short: use at least {minimum} random characters ({meaning})")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError on the first problem."""
    env = os.environ if env is None else env
    vapid_pem, vapid_file = vapid_key_from(env)
    settings = Settings(
        redis_url=_redis_url(env),
        upstream_url=_http_url(env, "UPSTREAM_URL", "Nextcloud's internal address that davpush forwards to, e.g. "
                               "http://127.0.0.1:8080 (not the public vhost that routes /remote.php/dav/ to davpush)"),
        public_url=_http_url(env, "PUBLIC_URL", "external base URL clients use, e.g. https://cloud.example.com"),
        webhook_secret=_secret(env, "WEBHOOK_SECRET", "shared secret of the Nextcloud webhooks", 16),
        vapid_private_key_file=vapid_file,
        vapid_private_key_pem=vapid_pem,
        vapid_subject=_vapid_subject(env),
        secret_key=_secret(env, "SECRET_KEY", "server secret for topics", 32),
        dav_prefix=_dav_prefix(env),
        upstream_flavor=_choice(env, "UPSTREAM_FLAVOR", "nextcloud", ("nextcloud", "generic")),
        upstream_timeout=_number(env, "UPSTREAM_TIMEOUT", 300.0, float, 1, 3600),
        upstream_verify_tls=_bool(env, "UPSTREAM_VERIFY_TLS", True),
        push_allow_http=_bool(env, "PUSH_ALLOW_HTTP", False),
        push_allowed_networks=_networks(env, "PUSH_ALLOWED_NETWORKS"),
        subscription_max_days=_number(env, "SUBSCRIPTION_MAX_DAYS", 7, int, 3, 365),
        push_max_subscriptions_per_user=_number(env, "PUSH_MAX_SUBSCRIPTIONS_PER_USER", 250, int, 1, 100000),
        push_ttl=_number(env, "PUSH_TTL", 86400, int, 0, 2419200),
        push_urgency=_choice(env, "PUSH_URGENCY", "normal", ("very-low", "low", "normal", "high")),
        push_coalesce_ms=_number(env, "PUSH_COALESCE_MS", 0, int, 0, 600000),
        push_min_interval_ms=_number(env, "PUSH_MIN_INTERVAL_MS", 1000, int, 0, 600000),
        push_concurrency=_number(env, "PUSH_CONCURRENCY", 256, int, 1, 2048),
        push_per_origin_concurrency=_number(env, "PUSH_PER_ORIGIN_CONCURRENCY", 32, int, 1, 1024),
        push_origin_concurrency=_origin_limits(env, "PUSH_ORIGIN_CONCURRENCY"),
        push_connect_timeout=_number(env, "PUSH_CONNECT_TIMEOUT", 5.0, float, 0.1, 60),
        push_read_timeout=_number(env, "PUSH_READ_TIMEOUT", 10.0, float, 0.1, 120),
        push_max_attempts=_number(env, "PUSH_MAX_ATTEMPTS", 8, int, 1, 20),
        push_straggler_seconds=_number(env, "PUSH_STRAGGLER_SECONDS", 0.5, float, 0.05, 60),
        push_keepalive_seconds=_number(env, "PUSH_KEEPALIVE_SECONDS", 30.0, float, 1, 600),
        push_proxy=_proxy(env),
        fanout_lease_seconds=_number(env, "FANOUT_LEASE_SECONDS", 15, int, 3, 600),
        redis_socket_timeout=_number(env, "REDIS_SOCKET_TIMEOUT", 1.5, float, 0.1, 60),
        purge_interval=_number(env, "PURGE_INTERVAL", 600, int, 10, 86400),
        admin_password=_secret(env, "ADMIN_PASSWORD", "password of the admin pages", 12, required=False),
        dashboard_allow_delete=_bool(env, "RQ_DASHBOARD_ALLOW_DELETE", False),
        log_format=_choice(env, "LOG_FORMAT", "text", ("text", "json")),
        log_level=_choice(env, "LOG_LEVEL", "info", ("debug", "info", "warning", "error")).upper(),
        queue_name=env.get("QUEUE_NAME", "davpush").strip() or "davpush",
        redis_prefix=env.get("REDIS_PREFIX", "dp:").strip() or "dp:",
        redis_ssl_cert_reqs=_choice(env, "REDIS_SSL_CERT_REQS", "required", ("required", "none")),
        redis_sentinel_password=_secret(env, "REDIS_SENTINEL_PASSWORD", "password of the Redis Sentinels", 1, required=False),
    )
    return settings


def _proxy(env: Mapping[str, str]) -> str:
    """PUSH_PROXY (or PUSH_PROXY_FILE): http(s)://[user:password@]host:port; errors never echo it."""
    from ..delivery.egress_proxy import ProxyURLError, parse_proxy_url

    try:
        value, source = value_or_file(env, "PUSH_PROXY")
        parse_proxy_url(value)
    except SourceError as error:
        raise ConfigError(str(error)) from None
    except ProxyURLError as error:
        raise ConfigError(f"{source} {error}") from None
    return value


def _redis_url(env: Mapping[str, str]) -> str:
    value = _required(env, "REDIS_URL", "e.g. redis://localhost:6379/0; `davpush up` starts a private one when unset")
    try:
        check_url(value)
    except RedisUrlError as error:
        raise ConfigError(f"REDIS_URL {error}") from None
    return value

"""Secrets the test settings use (also needed by tests that call the service)."""
WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"
ADMIN_PASSWORD = "admin-password-for-tests"
SECRET_KEY = "secret-key-for-tests-0123456789abcdefghij"


def service_settings(redis_url: str, upstream_url: str, vapid_key_file: str) -> dict[str, str]:
    """The environment of a davpush process under test: a loopback receiver is allowed."""
    return {
        "REDIS_URL": redis_url,
        "UPSTREAM_URL": upstream_url,
        "PUBLIC_URL": "https://push.example.test",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "VAPID_PRIVATE_KEY_FILE": vapid_key_file,
        "VAPID_SUBJECT": "mailto:admin@example.test",
        "SECRET_KEY": SECRET_KEY,
        "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PUSH_ALLOW_HTTP": "true",
        "PUSH_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
    }

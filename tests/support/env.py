"""Secrets the test settings use (also needed by tests that call the service)."""
WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"
ADMIN_PASSWORD = "admin-password-for-tests"
SECRET_KEY = "secret-key-for-tests-0123456789abcdefghij"

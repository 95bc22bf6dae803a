"""gunicorn settings for davpush's web process (read automatically from this directory).

Threaded workers suit a streaming proxy: a slow upload or download holds a
thread, not a whole process.
"""
import os
import sys

bind = f"{os.environ.get('BIND_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "32"))
timeout = 120  # worker heartbeat; gthread keeps long transfers alive in their threads
graceful_timeout = 30
keepalive = 5
accesslog = None  # davpush writes its own request log lines (with request ids, without secrets)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def on_starting(server):
    from app.config import ConfigError, load_settings

    try:
        load_settings()
    except ConfigError as error:
        sys.stderr.write(f"davpush: configuration error: {error}\n")
        sys.stderr.flush()
        os._exit(2)

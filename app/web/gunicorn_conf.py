"""gunicorn settings for davpush's web process. gunicorn loads this file by path (`--config`, see
app/web/__init__.py; the repository's gunicorn.conf.py runs it for `gunicorn wsgi:app`).

gevent workers: every request is a greenlet, so DAV requests that wait on a slow or hung
upstream never make webhooks, registrations or /push/healthz wait for a free thread (with a
thread pool they queue behind them). WEB_CONNECTIONS bounds the requests one worker process
serves at once. WEB_WORKER_CLASS=gthread is the fallback without gevent.
"""
import os
import sys

worker_class = os.environ.get("WEB_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    # Patch before anything imports ssl or socket (the app's modules do, in on_starting below):
    # patching later breaks TLS to an https upstream.
    from gevent import monkey

    monkey.patch_all()

bind = f"{os.environ.get('BIND_HOST', '0.0.0.0')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
threads = int(os.environ.get("WEB_THREADS", "32"))  # gthread only
timeout = 120  # worker heartbeat; long transfers are kept alive in their own greenlet or thread
graceful_timeout = 30
keepalive = 5
accesslog = None  # davpush writes its own request log lines (with request ids, without secrets)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# gunicorn 25+ would open a control socket in $HOME, shared by every instance of the user and
# unwritable under systemd's ProtectHome or in a read-only container: nothing here uses it.
control_socket_disable = True


def on_starting(server):
    from app.core.config import ConfigError, load_settings

    try:
        load_settings()
    except ConfigError as error:
        sys.stderr.write(f"davpush: configuration error: {error}\n")
        sys.stderr.flush()
        os._exit(2)

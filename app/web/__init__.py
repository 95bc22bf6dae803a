"""The web process as installed: the WSGI entry (wsgi.py) and the gunicorn settings
(gunicorn_conf.py) ship inside the package, so `davpush web` and `davpush up` run from any
directory. The repository's top-level wsgi.py and gunicorn.conf.py only point here."""
from __future__ import annotations

import sys
from pathlib import Path

WSGI_APP = "app.web.wsgi:app"
# Given to gunicorn as a file path, never imported as app.web.gunicorn_conf: the file
# monkey-patches for gevent first, before any of the service's modules are loaded.
GUNICORN_SETTINGS = Path(__file__).with_name("gunicorn_conf.py")


def gunicorn_command() -> list[str]:
    """The web process's command line, the same for `davpush web` and `davpush up`."""
    return [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_SETTINGS), WSGI_APP]

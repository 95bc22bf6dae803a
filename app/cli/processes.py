"""`davpush up|web|worker`: run davpush's processes."""
from __future__ import annotations

import argparse
import os
from typing import Any

from ..core.config import load_settings


def _worker(args: argparse.Namespace) -> int:
    from ..core.logs import setup_logging
    from ..jobs.worker import run_worker

    settings = load_settings()
    setup_logging(settings.log_format, settings.log_level)
    return run_worker(burst=args.burst)


def _web(args: argparse.Namespace) -> int:
    from ..web import gunicorn_command

    load_settings()  # one clear line instead of a gunicorn traceback
    command = gunicorn_command()
    os.execv(command[0], command)
    return 0  # not reached


def _up(args: argparse.Namespace) -> int:
    from ..ops.supervisor import run_all

    return run_all()


def register(commands: Any) -> None:
    """Add the process commands to the `davpush` parser."""
    up = commands.add_parser(
        "up", help="run everything: web, worker (with scheduler) and, without REDIS_URL, a private Redis in ./var/redis"
    )
    up.set_defaults(handler=_up)
    web = commands.add_parser("web", help="run the web process (gunicorn with the packaged settings, from any directory)")
    web.set_defaults(handler=_web)
    worker = commands.add_parser("worker", help="run a delivery worker (RQ SimpleWorker with the scheduler)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(handler=_worker)

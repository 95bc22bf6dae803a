"""Fixtures of the fault suite: real processes (private Redis with AOF, gunicorn web, davpush workers),
misbehaving push services, and the figures the suite measures.

Figures: tests call `figures.record(name, **values)`; at the end of the session they are written to
`<pytest basetemp>/fault-figures.json` (and to $FAULT_FIGURES_FILE when set) and printed in the
terminal summary ("fault figures").
"""
from __future__ import annotations

import json
import os
import time

import pytest

from support.fault_push import FaultServer
from support.fault_stack import Stack
from support.procs import have_redis_server

FIGURES = pytest.StashKey[dict]()
FIGURES_PATH = pytest.StashKey[str]()


def pytest_configure(config):
    config.stash[FIGURES] = {}


def pytest_collection_modifyitems(config, items):
    if have_redis_server() or os.environ.get("CI") == "true":  # in CI a missing binary fails the tests
        return
    skip = pytest.mark.skip(reason="the fault suite needs the redis-server binary")
    for item in items:
        if "faults" in item.keywords:
            item.add_marker(skip)


class Figures:
    def __init__(self, store: dict, test: str):
        self._store = store
        self._test = test

    def record(self, name: str, **values) -> None:
        """Keep measured values under `name` (later records of the same name update it)."""
        entry = self._store.setdefault(name, {"test": self._test})
        entry.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in values.items()})


@pytest.fixture
def figures(request) -> Figures:
    return Figures(request.config.stash[FIGURES], request.node.nodeid)


@pytest.fixture
def make_stack(tmp_path, vapid_key_file):
    """Start a Stack (Redis + web + workers); all of it is stopped after the test."""
    stacks = []

    def make(*, upstream_url: str | None = None, workers: int = 1, web: bool = True, name: str = "stack", **settings) -> Stack:
        kwargs = {"upstream_url": upstream_url} if upstream_url else {}
        stack = Stack(tmp_path / name, vapid_key_file, workers=workers, web=web, **kwargs, **settings)
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def fault_server():
    """FaultServer factory; every server is stopped after the test."""
    servers = []

    def make(host: str = "127.0.0.1", port: int = 0, **kwargs) -> FaultServer:
        server = FaultServer(host, port, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    figures = config.stash.get(FIGURES, {})
    if not figures:
        return
    document = {"recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "figures": figures}
    text = json.dumps(document, indent=2, sort_keys=True)
    paths = []
    try:
        base = config._tmp_path_factory.getbasetemp()  # noqa: SLF001 (pytest's own tmp_path_factory)
        paths.append(base / "fault-figures.json")
    except Exception:
        pass
    if os.environ.get("FAULT_FIGURES_FILE"):
        paths.append(os.environ["FAULT_FIGURES_FILE"])
    written = []
    for path in paths:
        try:
            with open(path, "w") as handle:
                handle.write(text + "\n")
            written.append(str(path))
        except OSError:
            pass
    terminalreporter.section("fault figures")
    for name, values in sorted(figures.items()):
        shown = ", ".join(f"{k}={v}" for k, v in values.items() if k != "test")
        terminalreporter.write_line(f"{name}: {shown}")
    if written:
        terminalreporter.write_line("written to " + ", ".join(written))

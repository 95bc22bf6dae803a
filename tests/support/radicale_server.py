"""A real Radicale server in a subprocess, for tests against a second DAV implementation.

Radicale serves at the root path (DAV prefix ""): collections look like `/alice/work/`.
"""
from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from .servers import free_port

RADICALE_USERS = {"alice": "alice-pw", "bob": "bob-pw"}
START_TIMEOUT = 20.0

_CONFIG = """\
[server]
hosts = 127.0.0.1:{port}

[auth]
type = htpasswd
htpasswd_filename = {htpasswd}
htpasswd_encryption = plain
delay = 0

[rights]
type = owner_only

[storage]
filesystem_folder = {storage}

[web]
type = none

[logging]
level = info
"""


class RadicaleServer:
    """`RadicaleServer(tmp_dir)` starts at once; `.url`, `.port`, `.log_path`, `.stop()`; a context manager."""

    def __init__(self, tmp_dir, users: dict[str, str] | None = None):
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.users = dict(users or RADICALE_USERS)
        htpasswd = self.dir / "users"
        htpasswd.write_text("".join(f"{user}:{password}\n" for user, password in self.users.items()))
        self.log_path = self.dir / "radicale.log"
        self._process: subprocess.Popen | None = None
        for _attempt in range(3):  # the free port may be taken between free_port() and bind
            self.port = free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            config = self.dir / "radicale.conf"
            config.write_text(_CONFIG.format(port=self.port, htpasswd=htpasswd, storage=self.dir / "collections"))
            if self._start(config):
                return
            if "in use" not in self.log():
                break
        raise RuntimeError(f"Radicale did not start; log:\n{self.log()}")

    def _start(self, config: Path) -> bool:
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "radicale", "--config", str(config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            if self._answers():
                return True
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Radicale did not answer within {START_TIMEOUT:.0f} s; log:\n{self.log()}")

    def _answers(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=0.5)
        try:
            connection.request("OPTIONS", "/")
            connection.getresponse().read()
            return True
        except OSError:
            return False
        finally:
            connection.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def __enter__(self) -> RadicaleServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------ collections

    def make_calendar(self, user: str, password: str, name: str, displayname: str | None = None) -> str:
        """MKCALENDAR `/<user>/<name>/`; returns that path."""
        path = f"/{user}/{name}/"
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
            f"<D:displayname>{displayname or name}</D:displayname>"
            "</D:prop></D:set></C:mkcalendar>"
        )
        self._create("MKCALENDAR", path, user, password, body)
        return path

    def make_addressbook(self, user: str, password: str, name: str, displayname: str | None = None) -> str:
        """Extended MKCOL of an address book `/<user>/<name>/`; returns that path."""
        path = f"/{user}/{name}/"
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<D:mkcol xmlns:D="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><D:set><D:prop>'
            "<D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype>"
            f"<D:displayname>{displayname or name}</D:displayname>"
            "</D:prop></D:set></D:mkcol>"
        )
        self._create("MKCOL", path, user, password, body)
        return path

    def _create(self, method: str, path: str, user: str, password: str, body: str) -> None:
        response = requests.request(method, self.url + path, data=body.encode(), auth=(user, password),
                                    headers={"Content-Type": "application/xml; charset=utf-8"}, timeout=10)
        if response.status_code != 201:
            raise RuntimeError(f"{method} {path} → {response.status_code}: {response.text[:500]}")

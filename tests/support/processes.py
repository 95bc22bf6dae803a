"""Service processes for the packaging tests: started with their output in a log file,
waited on over HTTP, stopped with SIGTERM (killed only if they do not stop)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests


class Service:
    def __init__(self, name: str, command: list[str], *, cwd: Path, env: dict, logs: Path):
        self.name = name
        self.log = logs / f"{name}.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, as a platform stops a process; the exit status it chose."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} did not stop within {timeout} s of SIGTERM:\n{self.output()[-3000:]}") from None

    def wait_for_status(self, url: str, status: int, timeout: float = 90) -> requests.Response:
        """Poll `url` until it answers `status`; fail early (with the log) if the process ends."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.output()[-3000:]}")
            try:
                response = requests.get(url, timeout=5)
                if response.status_code == status:
                    return response
                last = f"{response.status_code} {response.text[:300]}"
            except requests.RequestException as error:
                last = type(error).__name__
            time.sleep(0.3)
        raise AssertionError(f"{url} did not answer {status} within {timeout} s (last: {last}):\n{self.output()[-3000:]}")


def stop_all(services: list[Service]) -> dict[str, int]:
    """Stop in reverse start order; every one is stopped even when one fails to."""
    codes, failure = {}, None
    for service in reversed(services):
        try:
            codes[service.name] = service.stop()
        except AssertionError as error:
            failure = failure or error
    if failure:
        raise failure
    return codes


def clean_env(venv_bin: Path | None = None, **settings: str) -> dict:
    """An environment with the settings given and nothing of the test run's virtualenv:
    only PATH (with `venv_bin` first), HOME and the locale come from outside."""
    outer_venv = sys.prefix if sys.prefix != sys.base_prefix else None
    path = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if not (outer_venv and entry.startswith(outer_venv))]
    if venv_bin is not None:
        path.insert(0, str(venv_bin))
    env = {"PATH": os.pathsep.join(path), "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    env.update(settings)
    return env

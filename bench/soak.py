"""Soak: the whole service for an hour (or --minutes), through restarts and outages; did it lose anything?

The processes are the ones the Procfile starts (gunicorn web, `davpush worker` x 2) on a private
Redis with AOF, from the fault suite's harness (tests/support/fault_stack.py). Subscriptions are
written straight into Redis: --calendars calendars, each with subscribers on two push services, a
steady one (127.0.0.1) and a flaky one (127.0.0.2). Webhooks arrive at --rate per second for random
calendars, each with the calendar's next sync-token; one that is not accepted (during a restart)
is sent again a second later, as Nextcloud's webhook job would, until it is.

Faults, one every --fault-every minutes, in turn:
  worker-kill   SIGKILL one worker in whatever it is doing; a new one is started 5 s later
  redis-restart Redis stopped (SIGTERM), down 3 s, started again with its AOF
  push-outage   the flaky push service answers 503 for 30 s, then refuses connections for 30 s
  web-kill      SIGKILL the web process group; a new one is started 2 s later

At the end the webhooks stop, and the soak waits (at most --settle seconds) until every subscriber's
newest push carries its calendar's last accepted sync-token: that is "nothing lost" (coalescing may
merge the changes in between into one push, which is allowed). It reports webhooks sent, accepted
and refused, pushes and copies, the time each fault took to heal, and the memory (RSS) of the web
and worker processes at the start and the end.

    .venv/bin/python bench/soak.py --minutes 60            # the hour
    .venv/bin/python bench/soak.py --minutes 3 --fault-every 0.5   # a quick look

Results go to stdout and bench/out/soak-<timestamp>.json. Needs redis-server (not the shared Redis).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.fault_push import FaultServer  # noqa: E402
from support.fault_stack import Stack  # noqa: E402
from support.payloads import object_event  # noqa: E402
from support.push_receiver import ClientKeys  # noqa: E402
from support.servers import free_port  # noqa: E402

OUT = ROOT / "bench" / "out"
TOKEN_IN_PUSH = re.compile(rb"sync/(\d+)")
FAULTS = ["worker-kill", "redis-restart", "push-outage", "web-kill"]


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (gunicorn's workers), in KiB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        return 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Calendars:
    """The calendars, their subscribers and the last sync-token accepted for each."""

    def __init__(self, stack: Stack, steady: FaultServer, flaky: FaultServer, count: int, per_service: int):
        self.names = [f"soak{i:03d}" for i in range(count)]
        self.keys = {name: ClientKeys.generate() for name in self.names}
        self.paths: dict[str, list[str]] = {}
        self.accepted: dict[str, int] = {}
        self.next_token = {name: 1000 for name in self.names}
        self.lock = threading.Lock()
        for name in self.names:
            endpoints, self.paths[name] = [], []
            for service, label in ((steady, "s"), (flaky, "f")):
                for n in range(per_service):
                    path = f"/{name}/{label}{n}"
                    endpoints.append((f"{name}-{label}{n}", service.endpoint(path)))
                    self.paths[name].append(path)
            stack.subscribe(f"calendars/alice/{name}", endpoints, self.keys[name], expires_in=7 * 86400)


def send_webhooks(stack: Stack, calendars: Calendars, rate: float, stop: threading.Event, tally: Counter) -> None:
    interval = 1.0 / rate
    due = time.monotonic()
    while not stop.is_set():
        name = random.choice(calendars.names)
        with calendars.lock:
            calendars.next_token[name] += 1
            token = calendars.next_token[name]
        while not stop.is_set():
            answer = stack.webhook(object_event(owner="alice", uri=name, token=token), timeout=10)
            tally["sent"] += 1
            if answer.status == 202:
                tally["accepted"] += 1
                with calendars.lock:
                    calendars.accepted[name] = max(calendars.accepted.get(name, 0), token)
                break
            tally[f"refused {answer.status or answer.error}"] += 1
            time.sleep(1.0)
        due += interval
        time.sleep(max(0.0, due - time.monotonic()))


_decrypted: dict[int, int] = {}  # id(attempt) -> the sync-token its push carried (0: none)


def newest_tokens(servers: list[FaultServer], calendars: Calendars) -> dict[str, int]:
    """Per subscriber path: the highest sync-token among the pushes it accepted (decrypted once each)."""
    newest: dict[str, int] = {}
    for server in servers:
        for attempt in server.deliveries():
            token = _decrypted.get(id(attempt))
            if token is None:
                name = attempt.path.split("/")[1]
                found = TOKEN_IN_PUSH.search(attempt.push().decrypt(calendars.keys[name])) if name in calendars.keys else None
                token = _decrypted[id(attempt)] = int(found.group(1)) if found else 0
            newest[attempt.path] = max(newest.get(attempt.path, 0), token)
    return newest


def behind(servers, calendars: Calendars) -> list[str]:
    tokens = newest_tokens(servers, calendars)
    with calendars.lock:
        accepted = dict(calendars.accepted)
    return [path for name, last in accepted.items() for path in calendars.paths[name] if tokens.get(path, 0) < last]


def heal_seconds(servers, calendars: Calendars, started: float, limit: float = 300.0) -> float | None:
    """Seconds from `started` until nobody is behind (webhooks keep coming, so it is re-checked)."""
    while time.monotonic() - started < limit:
        if not behind(servers, calendars):
            return round(time.monotonic() - started, 1)
        time.sleep(1.0)
    return None


def inject(fault: str, stack: Stack, flaky: FaultServer) -> None:
    if fault == "worker-kill":
        victim = stack.workers.pop(0)
        victim.kill_group(signal.SIGKILL)
        time.sleep(5)
        stack.start_worker()
    elif fault == "redis-restart":
        stack.redis.restart(down_seconds=3)
    elif fault == "push-outage":
        flaky.set_mode("503")
        time.sleep(30)
        flaky.set_mode("refuse")
        time.sleep(30)
        flaky.set_mode("ok")
    elif fault == "web-kill":
        stack.web.kill_group(signal.SIGKILL)
        time.sleep(2)
        stack.start_web()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--fault-every", type=float, default=5.0, help="minutes between faults")
    parser.add_argument("--calendars", type=int, default=40)
    parser.add_argument("--per-service", type=int, default=3, help="subscribers per calendar on each push service")
    parser.add_argument("--rate", type=float, default=2.0, help="webhooks per second")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds allowed at the end to catch up")
    options = parser.parse_args()

    from app.delivery.vapid import generate_key_file

    work = Path(tempfile.mkdtemp(prefix="davpush-soak-"))
    vapid = str(work / "vapid.pem")
    generate_key_file(vapid)
    steady = FaultServer("127.0.0.1", name="steady").start()
    flaky = FaultServer("127.0.0.2", free_port("127.0.0.2"), name="flaky").start()
    servers = [steady, flaky]
    stack = Stack(work / "stack", vapid, workers=2).start()
    report: dict = {"minutes": options.minutes, "calendars": options.calendars,
                    "subscribers": options.calendars * options.per_service * 2, "rate": options.rate,
                    "faults": [], "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    stop = threading.Event()
    tally: Counter = Counter()
    try:
        calendars = Calendars(stack, steady, flaky, options.calendars, options.per_service)
        time.sleep(2)
        report["rss_kib_start"] = {"web": rss_kib(stack.web.pid), "workers": [rss_kib(w.pid) for w in stack.workers]}
        sender = threading.Thread(target=send_webhooks, args=(stack, calendars, options.rate, stop, tally), daemon=True)
        sender.start()
        began = time.monotonic()
        end = began + options.minutes * 60
        number = 0
        while True:
            next_fault = began + (number + 1) * options.fault_every * 60
            if next_fault >= end:
                break
            time.sleep(max(0.0, next_fault - time.monotonic()))
            fault = FAULTS[number % len(FAULTS)]
            number += 1
            at = time.monotonic()
            inject(fault, stack, flaky)
            healed = heal_seconds(servers, calendars, at)
            entry = {"fault": fault, "at_minute": round((at - began) / 60, 1), "healed_after_s": healed}
            report["faults"].append(entry)
            print(json.dumps(entry), flush=True)
        time.sleep(max(0.0, end - time.monotonic()))
        stop.set()
        sender.join(30)
        settled = heal_seconds(servers, calendars, time.monotonic(), options.settle)
        time.sleep(3)  # late copies
        lagging = behind(servers, calendars)
        copies = Counter()
        for server in servers:
            copies.update(Counter(a.path for a in server.deliveries()))
        report.update({
            "webhooks": dict(tally),
            "settled_after_s": settled,
            "subscribers_behind_at_end": len(lagging),
            "behind_examples": lagging[:10],
            "pushes_delivered": sum(copies.values()),
            "pushes_per_subscriber_max": max(copies.values(), default=0),
            "rss_kib_end": {"web": rss_kib(stack.web.pid), "workers": [rss_kib(w.pid) for w in stack.workers]},
            "worker_restarts_left_running": sum(1 for w in stack.workers if w.alive),
        })
    finally:
        stop.set()
        stack.stop()
        for server in servers:
            server.stop()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"saved {path}")
    return 0 if report.get("subscribers_behind_at_end") == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

"""CPU that GET and REPORT cost davpush with the full nginx layout and with the method split (issue 11).

    .venv/bin/python bench/split_cpu.py             # ~1 min; needs nginx (as tests/test_nginx_routing.py)

For each layout (sites-available/nextcloud.conf, then nextcloud-split.conf, alternating over
--rounds): the shipped nginx layout rendered as tests/test_nginx_routing.py runs it (real nginx,
https), davpush's real web process (`python -m gunicorn wsgi:app`, WEB_CONCURRENCY=1, INFO request
log) and the Nextcloud stand-in (tests/support/nextcloud_stub.py) with 30 events in one calendar.
One client sends --requests sequential requests of each kind over one keep-alive connection,
after 20 untimed ones:

  REPORT  sync-collection of the calendar without a token (30 hrefs and etags, ~5 KB answer)
  GET     a 64 KiB file

and reads the CPU time (utime + stime, /proc) that davpush's worker and nginx's worker spent
meanwhile. Per request = delta / requests; medians over the rounds. The stand-in's own CPU (in
this process) is not counted.

Results go to stdout and bench/out/split-cpu-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import requests  # noqa: E402

from common import ROOT, bench_env, cleanup, median, save_json, versions  # noqa: E402
from support.nextcloud_stub import NextcloudStub  # noqa: E402
from support.nginx_layout import SITE, SPLIT_SITE, Gunicorn, Nginx, Ports, find_nginx, render  # noqa: E402

SYNC_COLLECTION = (b'<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/>'
                   b"<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>")
KINDS = ("REPORT", "GET")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


class Stopper:
    def __init__(self, stop):
        self.stop = stop


def measure(site: str, count: int) -> dict[str, dict[str, float]]:
    directory = Path(tempfile.mkdtemp(prefix="davpush-split-cpu-"))
    stub = NextcloudStub().start()
    for i in range(30):
        stub.add_object("alice", "work", f"event-{i}.ics")
    ports = Ports.pick()
    with cleanup(Stopper(lambda: shutil.rmtree(directory, ignore_errors=True)), Stopper(stub.stop)) as running:
        nginx = Nginx(find_nginx(), render(directory, ports, int(stub.url.rsplit(":", 1)[1]), site=site), ports)
        running.append(Stopper(nginx.stop))
        davpush = Gunicorn(bench_env(UPSTREAM_URL=nginx.internal, PUBLIC_URL=nginx.public, LOG_LEVEL="info"),
                           ports.davpush, directory)
        running.insert(2, Stopper(davpush.stop))  # stopped after nginx, whose keep-alive would hold it up
        worker = davpush.worker_pid()
        (nginx_worker,) = children(nginx.process.pid)
        session = requests.Session()
        session.auth = ("alice", "alice-pw")
        send = {
            "REPORT": lambda: session.request("REPORT", nginx.public + "/remote.php/dav/calendars/alice/work/",
                                              data=SYNC_COLLECTION, headers={"Depth": "1"}, verify=nginx.certificate),
            "GET": lambda: session.get(nginx.public + "/remote.php/dav/files/alice/file.bin?size=65536",
                                       verify=nginx.certificate),
        }
        result = {}
        for kind in KINDS:
            for _ in range(20):
                send[kind]()
            davpush_before, nginx_before = cpu_seconds(worker), cpu_seconds(nginx_worker)
            for _ in range(count):
                response = send[kind]()
                if response.status_code not in (200, 207):
                    raise RuntimeError(f"{kind}: {response.status_code} {response.text[:200]}")
            result[kind] = {
                "davpush_ms": (cpu_seconds(worker) - davpush_before) / count * 1000,
                "nginx_ms": (cpu_seconds(nginx_worker) - nginx_before) / count * 1000,
            }
        session.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    if find_nginx() is None:
        sys.exit("nginx is not installed (apt-get install nginx-light)")
    os.chdir(ROOT)
    load_before = os.getloadavg()
    runs: dict[str, list] = {SITE: [], SPLIT_SITE: []}
    for _ in range(args.rounds):
        for site in (SITE, SPLIT_SITE):
            runs[site].append(measure(site, args.requests))
    summary = {
        site: {kind: {what: median([r[kind][what] for r in results]) for what in ("davpush_ms", "nginx_ms")}
               for kind in KINDS}
        for site, results in runs.items()
    }
    print(f"CPU per request (median of {args.rounds} rounds of {args.requests}), load before {load_before[0]:.2f}")
    print(f"{'layout':42} {'kind':7} {'davpush worker':>15} {'nginx worker':>13}")
    for site, kinds in summary.items():
        for kind, values in kinds.items():
            print(f"{site:42} {kind:7} {values['davpush_ms']:12.2f} ms {values['nginx_ms']:10.2f} ms")
    path = save_json(f"split-cpu-{time.strftime('%Y%m%d-%H%M%S')}.json", {
        "args": vars(args), "load_before": load_before, "load_after": os.getloadavg(), "versions": versions(),
        "runs": runs, "median": summary,
    })
    print(f"written to {path}")


if __name__ == "__main__":
    main()

"""The gateway's upstream client against the libraries it replaced (issue 11): CPU per request.

One process sends the same requests, one after another on one keep-alive connection, to
`bench/dav_upstream.js` with each client: requests.Session (what the gateway used before),
urllib3's HTTPConnectionPool (requests without the session layer) and the gateway's own
`app.gateway.upstream_http` (what it uses now). CPU = this process's time.process_time() per
request (the Node upstream's CPU is not counted); rounds rotate the order, medians reported.

    .venv/bin/python bench/upstream_client.py [--requests 3000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import requests  # noqa: E402
import urllib3  # noqa: E402

import common  # noqa: E402
from app.gateway.upstream_http import Origin, Pool, exchange  # noqa: E402

BODY = (b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/>'
        b"<d:displayname/><d:sync-token/></d:prop></d:propfind>")
HEADERS = {"Depth": "0", "Content-Type": "application/xml; charset=utf-8", "Authorization": "Basic YWxpY2U6cHc=",
           "X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "cloud.example.com"}
PATH = "/remote.php/dav/calendars/alice/personal/"


def with_requests(base: str, n: int) -> int:
    session = requests.Session()
    session.trust_env = False
    total = 0
    for _ in range(n):
        response = session.request("PROPFIND", base + PATH, headers=HEADERS, data=BODY, stream=True,
                                   allow_redirects=False, timeout=(10, 60))
        for data in response.raw.stream(65536, decode_content=False):
            total += len(data)
        response.close()
    return total


def with_urllib3(base: str, n: int) -> int:
    pool = urllib3.HTTPConnectionPool("127.0.0.1", int(base.rsplit(":", 1)[1]), maxsize=4, retries=False)
    total = 0
    for _ in range(n):
        response = pool.urlopen("PROPFIND", PATH, headers=HEADERS, body=BODY, preload_content=False,
                                redirect=False, timeout=urllib3.Timeout(connect=10, read=60))
        for data in response.stream(65536, decode_content=False):
            total += len(data)
        response.release_conn()
    return total


def with_upstream_http(base: str, n: int) -> int:
    pool = Pool(Origin.parse(base), connect_timeout=10)
    headers = list(HEADERS.items())
    total = 0
    for _ in range(n):
        response = exchange(pool, "PROPFIND", PATH, headers, BODY, read_timeout=60)
        while data := response.read1():
            total += len(data)
        response.close()
    return total


CLIENTS = {"requests": with_requests, "urllib3": with_urllib3, "upstream_http": with_upstream_http}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    upstream = common.Proc(["node", str(common.BENCH / "dav_upstream.js")], log_name="upstream-client.log",
                           stdout_pipe=True)
    try:
        port = int(upstream.popen.stdout.readline().split()[1])
        base = f"http://127.0.0.1:{port}"
        sizes = {name: client(base, 50) for name, client in CLIENTS.items()}  # warm up; same bytes each
        assert len(set(sizes.values())) == 1, sizes
        names = list(CLIENTS)
        cpu: dict[str, list[float]] = {name: [] for name in names}
        for round_ in range(options.rounds):
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for name in order:
                started = time.process_time()
                CLIENTS[name](base, options.requests)
                cpu[name].append(1e6 * (time.process_time() - started) / options.requests)
        baseline = statistics.median(cpu["requests"])
        report = {"versions": common.versions(), "requests": options.requests, "rounds": options.rounds,
                  "cpu_us_per_request": cpu}
        print(f"CPU per request, median of {options.rounds} rounds of {options.requests} (one keep-alive connection):")
        for name in names:
            median = statistics.median(cpu[name])
            print(f"  {name:14s} {median:7.1f} µs  ({', '.join(f'{v:.0f}' for v in cpu[name])})"
                  f"  ratio to requests {median / baseline:.2f}")
        path = common.save_json(time.strftime("upstream-client-%Y%m%d-%H%M%S.json"), report)
        print(f"saved {path}")
        print(json.dumps({name: statistics.median(values) for name, values in cpu.items()}))
    finally:
        upstream.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

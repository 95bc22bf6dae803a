"""Peak memory of the web process for a large PROPFIND with push properties (issue 8, item 5).

    .venv/bin/python bench/propfind_memory.py                          # this checkout (~2 min)
    .venv/bin/python bench/propfind_memory.py --original /tmp/wt-orig  # also another checkout, e.g. the code before

Upstream: a canned Nextcloud-like DAV server (a threaded http.server in this process, HTTP/1.1
keep-alive, Content-Length) answering a Depth 1 PROPFIND on a calendar with a Sabre-style multistatus
of the calendar and 15,000 events (~6.9 MB: href, getetag, resourcetype, owner, a 404 propstat for
oc:owner-principal; built with tests/support/calendar_listing.py) and Depth 0 with the calendar alone.

Web process: the real one, `python -m gunicorn wsgi:app` with the checkout's gunicorn.conf.py, run
from the checkout's directory, with WEB_CONCURRENCY=1 (all parallel requests land in one worker
process) and 32 threads. A fresh web process for every measurement: Python keeps freed memory for
reuse, so a process that already served a large answer would under-report the next one.

One measurement: start the web process, warm it up (one small PROPFIND with and one without push
properties, Depth 0), wait 0.5 s, read the worker's VmRSS, reset its high-water mark
(`echo 5 > /proc/<pid>/clear_refs`), send N identical Depth 1 PROPFINDs in parallel (each client
reads the whole answer), then read VmHWM: growth = VmHWM - VmRSS before. Per request = growth / N.

Modes: `push` asks for displayname, getetag and P:transports + P:topic (the gateway rewrites the
answer); `plain` (the baseline) asks the same without push properties (streamed through untouched).
Runs alternate the modes; medians over --runs; ratio = push / plain of the same code.

Results go to stdout and bench/out/propfind-memory-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import http.client
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

sys.path.insert(0, str(common.ROOT / "tests"))
from support.calendar_listing import calendar_listing  # noqa: E402

CALENDAR = "/remote.php/dav/calendars/alice/personal/"
PUSH_BODY = (b'<?xml version="1.0" encoding="UTF-8"?><d:propfind xmlns:d="DAV:" xmlns:P="https://bitfire.at/webdav-push">'
             b"<d:prop><d:displayname/><d:getetag/><P:transports/><P:topic/></d:prop></d:propfind>")
PLAIN_BODY = (b'<?xml version="1.0" encoding="UTF-8"?><d:propfind xmlns:d="DAV:">'
              b"<d:prop><d:displayname/><d:getetag/></d:prop></d:propfind>")
AUTH = "Basic YWxpY2U6YWxpY2UtcHc="  # alice:alice-pw (the canned upstream does not check it)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # the gateway closing a pooled connection at shutdown is no news


class CannedUpstream:
    def __init__(self, events: int):
        self.large = calendar_listing(events, CALENDAR, "alice")
        self.small = calendar_listing(0, CALENDAR, "alice")
        bodies = {"1": self.large, "0": self.small}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PROPFIND(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = bodies.get(self.headers.get("Depth", "1"), bodies["1"])
                self.send_response(207)
                self.send_header("Content-Type", "application/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(stat[11]) + int(stat[12])) / 100  # utime + stime, clock ticks (100/s on Linux)


def worker_pid(master: int, timeout: float = 20.0) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def propfind(port: int, body: bytes, depth: str) -> tuple[int, int, bytes]:
    """(status, body length, first 4 kB) of one PROPFIND, reading the answer as it comes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("PROPFIND", CALENDAR, body=body,
                 headers={"Depth": depth, "Authorization": AUTH, "Content-Type": "application/xml; charset=utf-8"})
    response = conn.getresponse()
    size, head = 0, b""
    while data := response.read(65536):
        if len(head) < 4096:
            head += data[:4096]
        size += len(data)
    conn.close()
    return response.status, size, head


class Web:
    """The web process of one checkout, on a free port, in front of the canned upstream."""

    def __init__(self, app_dir: Path, upstream_url: str, label: str, worker_class: str = ""):
        self.port = common.free_port()
        env = common.bench_env(PORT=self.port, BIND_HOST="127.0.0.1", UPSTREAM_URL=upstream_url,
                               PUBLIC_URL=f"http://127.0.0.1:{self.port}", WEB_CONCURRENCY=1, WEB_THREADS=32,
                               LOG_LEVEL="warning", PYTHONPATH=str(app_dir))
        if worker_class:
            env["WEB_WORKER_CLASS"] = worker_class
        self.proc = common.Proc([common.PYTHON, "-m", "gunicorn", "wsgi:app"], env=env, cwd=app_dir,
                                log_name=f"web-propfind-{label}.log")
        try:
            common.wait_for_web(self.proc, self.port)
            self.worker = worker_pid(self.proc.pid)
            self.worker_class = self._worker_class()
        except BaseException:
            self.proc.stop()
            raise

    def _worker_class(self) -> str:
        for line in self.proc.log_path.read_text().splitlines():
            if "Using worker:" in line:
                return line.rsplit(":", 1)[1].strip()
        return "?"

    def stop(self):
        self.proc.stop()


def measure(app_dir: Path, upstream: CannedUpstream, mode: str, parallel: int, label: str, worker_class: str) -> dict:
    body = PUSH_BODY if mode == "push" else PLAIN_BODY
    web = Web(app_dir, upstream.url, label, worker_class)
    try:
        for warm in (PUSH_BODY, PLAIN_BODY):
            status, _, _ = propfind(web.port, warm, "0")
            assert status == 207, f"warm-up answered {status}; see {web.proc.log_path}"
        time.sleep(0.5)
        before = proc_status(web.worker)["VmRSS"]
        Path(f"/proc/{web.worker}/clear_refs").write_text("5")
        cpu_before = cpu_seconds(web.worker)
        results: list = [None] * parallel

        def client(i):
            results[i] = propfind(web.port, body, "1")

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(parallel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        peak = proc_status(web.worker)["VmHWM"]
        cpu = cpu_seconds(web.worker) - cpu_before
    finally:
        web.stop()
    for status, _size, head in results:
        assert status == 207, f"answered {status}; see {web.proc.log_path}"
        # the calendar comes first: its topic is in the first kilobytes of a push answer
        assert (b":topic>" in head) == (mode == "push"), "push properties missing or unexpected"
    growth_mb = (peak - before) / 1024
    return dict(mode=mode, parallel=parallel, worker_class=web.worker_class, rss_before_mb=round(before / 1024, 1),
                peak_mb=round(peak / 1024, 1),
                growth_mb=round(growth_mb, 1), growth_per_request_mb=round(growth_mb / parallel, 2),
                seconds=round(seconds, 2), worker_cpu_s=round(cpu, 2), answer_bytes=results[0][1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=15_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--parallel", default="1,8", help="comma-separated numbers of parallel requests")
    parser.add_argument("--original", default="", help="another checkout to measure the same way (e.g. the code before)")
    parser.add_argument("--worker-class", default="", help="WEB_WORKER_CLASS for gunicorn (default: the checkout's)")
    args = parser.parse_args()

    checkouts = {"current": common.ROOT}
    if args.original:
        checkouts["original"] = Path(args.original).resolve()
    upstream = CannedUpstream(args.events)
    print(f"canned Depth 1 answer: {len(upstream.large):,} bytes ({args.events:,} events)", flush=True)
    report = dict(started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), versions=common.versions(), args=vars(args),
                  checkouts={k: str(v) for k, v in checkouts.items()}, answer_bytes=len(upstream.large),
                  loadavg_before=Path("/proc/loadavg").read_text().split()[:3], runs=[], summary={})
    parallels = [int(n) for n in args.parallel.split(",")]
    try:
        for run in range(args.runs):
            for name, app_dir in checkouts.items():
                for parallel in parallels:
                    for mode in ("plain", "push"):
                        result = measure(app_dir, upstream, mode, parallel, f"{name}-{mode}-{parallel}", args.worker_class)
                        result.update(checkout=name, run=run)
                        report["runs"].append(result)
                        print(f"run {run} {name:8} {result['worker_class']:6} {mode:5} x{parallel}: growth {result['growth_mb']:7.1f} MB "
                              f"({result['growth_per_request_mb']:6.2f} MB/request), {result['seconds']:5.2f} s, "
                              f"worker CPU {result['worker_cpu_s']:5.2f} s", flush=True)
    finally:
        upstream.stop()
        common.clean_bench_db()

    answer_mb = len(upstream.large) / 1024 / 1024
    print(f"\nmedians of {args.runs} runs: peak RSS growth of the web worker (answer: {answer_mb:.2f} MB)")
    for name in checkouts:
        for parallel in parallels:
            row = {}
            for mode in ("plain", "push"):
                picked = [r for r in report["runs"] if (r["checkout"], r["mode"], r["parallel"]) == (name, mode, parallel)]
                row[mode] = {key: round(common.median([r[key] for r in picked]), 2)
                             for key in ("growth_mb", "growth_per_request_mb", "seconds", "worker_cpu_s")}
            push, plain = row["push"], row["plain"]
            # the pass-through often grows by less than a page or two: a ratio to ~0 says nothing
            row["ratio_push_vs_plain"] = round(push["growth_mb"] / plain["growth_mb"], 1) if plain["growth_mb"] >= 0.5 else None
            row["push_minus_plain_per_request_mb"] = round(push["growth_per_request_mb"] - plain["growth_per_request_mb"], 2)
            row["per_request_vs_answer_size"] = round(push["growth_per_request_mb"] / answer_mb, 2)
            report["summary"][f"{name} x{parallel}"] = row
            ratio = f"{row['ratio_push_vs_plain']}x" if row["ratio_push_vs_plain"] is not None else "n/a (plain < 0.5 MB)"
            print(f"  {name:8} x{parallel}: push {push['growth_mb']:6.1f} MB = {push['growth_per_request_mb']:5.2f} MB/request "
                  f"({row['per_request_vs_answer_size']:.2f}x the answer; {push['seconds']:.2f} s, worker CPU "
                  f"{push['worker_cpu_s']:.2f} s) | plain {plain['growth_mb']:5.1f} MB = {plain['growth_per_request_mb']:5.2f} "
                  f"MB/request ({plain['seconds']:.2f} s) | push/plain {ratio}")
    if "original" in checkouts:
        print("\ncurrent vs original, push, MB per request")
        for parallel in parallels:
            now = report["summary"][f"current x{parallel}"]["push"]["growth_per_request_mb"]
            before = report["summary"][f"original x{parallel}"]["push"]["growth_per_request_mb"]
            factor = before / now if now > 0 else float("inf")
            report["summary"][f"original/current x{parallel}"] = round(factor, 1)
            print(f"  x{parallel}: {before:.2f} -> {now:.2f} MB/request ({factor:.1f}x less)")
    path = common.save_json(f"propfind-memory-{time.strftime('%Y%m%d-%H%M%S')}.json", report)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

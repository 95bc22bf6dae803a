"""Gateway cost (issue 11): CPU per proxied request and throughput, proxied vs direct.

The web process is the real one (`python -m app.cli web`: gunicorn with the packaged settings,
gevent workers, `WEB_CONCURRENCY` 2 unless --web-workers) in front of `bench/dav_upstream.js`, a
canned DAV upstream. Load comes from `bench/dav_load.js` (Node, keep-alive connections). For each
request kind the same load runs against the upstream directly (the baseline of the same run) and
through davpush.

CPU per request = the web processes' own CPU time (utime + stime of the gunicorn master and its
workers, from /proc) during the timed window ÷ requests completed in it. For bodies, per MB.

PROPFIND: Depth 0 on a calendar (one response: the small PROPFIND a client sends for each
collection) and Depth 1 on the calendar home (the home and 5 calendars, as in a collection
refresh); each plain and asking for push properties.

Upstreams: `fast` (Node answers at once: the gateway is the bottleneck) and `nextcloud`
(`--serial --delay-ms 5.5`: one request at a time, ≈ 180/s, like a small Nextcloud's PHP).
GET 100 MiB also reports the growth of the web workers' peak RSS (VmHWM after /proc clear_refs).

    .venv/bin/python bench/gateway.py [--runs 3] [--seconds 4] [--cases propfind,...] [--upstreams fast,nextcloud]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DAV = "/remote.php/dav"
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/">'
    b"<d:prop><d:resourcetype/><d:displayname/><cs:getctag/><d:sync-token/></d:prop></d:propfind>"
)
PUSH_PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/" '
    b'xmlns:P="https://bitfire.at/webdav-push"><d:prop><d:resourcetype/><d:displayname/><cs:getctag/>'
    b"<d:sync-token/><P:transports/><P:topic/><P:supported-triggers/></d:prop></d:propfind>"
)
REPORT_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>'
    b"http://sabre.io/ns/sync/1234</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop>"
    b"</d:sync-collection>"
)
MB = 1024 * 1024
AUTH = "Authorization: Basic YWxpY2U6YWxpY2UtcHc="  # alice:alice-pw (the upstream accepts anything)

# name: (method, path, headers, body, connections, per-MB of this many bytes or None)
CASES = {
    "propfind": ("PROPFIND", f"{DAV}/calendars/alice/personal/", ["Depth: 0"], PROPFIND_BODY, 16, None),
    "propfind-push": ("PROPFIND", f"{DAV}/calendars/alice/personal/", ["Depth: 0"], PUSH_PROPFIND_BODY, 16, None),
    "propfind-home": ("PROPFIND", f"{DAV}/calendars/alice/", ["Depth: 1"], PROPFIND_BODY, 16, None),
    "propfind-home-push": ("PROPFIND", f"{DAV}/calendars/alice/", ["Depth: 1"], PUSH_PROPFIND_BODY, 16, None),
    "report": ("REPORT", f"{DAV}/calendars/alice/personal/", ["Depth: 1"], REPORT_BODY, 16, None),
    "get-64k": ("GET", f"{DAV}/calendars/alice/personal/64k", [], None, 16, 64 * 1024),
    "put-1m": ("PUT", f"{DAV}/calendars/alice/personal/upload.ics", ["Content-Type: text/calendar"], MB, 4, MB),
    "put-64m": ("PUT", f"{DAV}/files/alice/upload.bin", ["Content-Type: application/octet-stream"], 64 * MB, 2, 64 * MB),
    "get-100m": ("GET", f"{DAV}/calendars/alice/personal/100m", [], None, 2, 100 * MB),
}
LARGE = ("put-64m", "get-100m")  # measured over a fixed number of requests, with the peak RSS growth
UPSTREAMS = {"fast": [], "nextcloud": ["--serial", "--delay-ms", "5.5"]}


class Upstream:
    def __init__(self, name: str):
        self.proc = common.Proc(["node", str(common.BENCH / "dav_upstream.js"), *UPSTREAMS[name]],
                                log_name=f"dav-upstream-{name}.log", stdout_pipe=True)
        line = self.proc.popen.stdout.readline().decode().strip()
        if not line.startswith("PORT "):
            self.proc.stop()
            raise RuntimeError(f"upstream did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        self.proc.stop()


class Web:
    def __init__(self, upstream_url: str, port: int, workers: int, cwd: Path = common.ROOT, label: str = "web"):
        env = common.bench_env(UPSTREAM_URL=upstream_url, PUBLIC_URL=f"http://127.0.0.1:{port}", PORT=port,
                               BIND_HOST="127.0.0.1", WEB_CONCURRENCY=workers)
        self.port = port
        self.proc = common.Proc([common.PYTHON, "-m", "app.cli", "web"], env=env, log_name=f"gateway-{label}.log",
                                cwd=cwd)
        common.wait_for_web(self.proc, port)
        deadline = time.time() + 20
        while len(self.workers()) < workers and time.time() < deadline:
            time.sleep(0.1)

    def workers(self) -> list[int]:
        master = self._master()
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except OSError:
            return []
        return [int(pid) for pid in children]

    def _master(self) -> int:
        # `python -m app.cli web` execs gunicorn (same pid) or runs it as a child: follow one level.
        pid = self.proc.pid
        exe = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"gunicorn" in exe:
            return pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0]) if children else pid

    def cpu_seconds(self) -> float:
        total = 0.0
        for pid in [self._master(), *self.workers()]:
            total += cpu_of(pid)
        return total

    def reset_peak(self) -> dict[int, int]:
        before = {}
        for pid in self.workers():
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            before[pid] = status_kib(pid, "VmRSS")
        return before

    def peak_growth_mib(self, before: dict[int, int]) -> float:
        return max((status_kib(pid, "VmHWM") - rss) / 1024 for pid, rss in before.items())

    def stop(self) -> None:
        self.proc.stop()


def cpu_of(pid: int) -> float:
    """Seconds on a CPU, all threads: the scheduler's exact figure (schedstat), not utime + stime,
    which the kernel samples at its tick and so misattributes for short, timer-driven runs."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def load(base: str, case: str, seconds: float, count: int | None = None) -> dict:
    method, path, headers, body, connections, _ = CASES[case]
    args = ["node", str(common.BENCH / "dav_load.js"), base + path, method, str(connections), str(seconds)]
    for header in headers + [AUTH]:
        args += ["--header", header]
    if isinstance(body, bytes):
        body_file = common.OUT / f"gateway-{case}.body"
        body_file.write_bytes(body)
        args += ["--body-file", str(body_file)]
    elif isinstance(body, int):
        args += ["--body-bytes", str(body)]
    if count:
        args += ["--count", str(count)]
    out = subprocess.run(args, capture_output=True, check=True, timeout=600).stdout
    return json.loads(out)


def measure(web: Web, upstream: Upstream, case: str, seconds: float, reference: Web | None = None) -> dict:
    per_bytes = CASES[case][5]
    big = case in LARGE
    count = 6 if big else None
    load(upstream.url, case, min(seconds, 1.0), count=2 if big else None)  # warm the connections
    direct = load(upstream.url, case, seconds, count=count)
    load(f"http://127.0.0.1:{web.port}", case, min(seconds, 1.0), count=2 if big else None)
    peak = web.reset_peak() if big else None
    cpu0 = web.cpu_seconds()
    proxied = load(f"http://127.0.0.1:{web.port}", case, seconds, count=count)
    cpu = web.cpu_seconds() - cpu0
    bad = {s: n for s, n in proxied["statuses"].items() if not s.startswith("2")}
    result = {
        "direct_rate": direct["rate"], "proxied_rate": proxied["rate"],
        "ratio": proxied["rate"] / direct["rate"] if direct["rate"] else None,
        "requests": proxied["requests"], "errors": proxied["errors"] + direct["errors"], "non_2xx": bad,
        "cpu_ms_per_request": 1000 * cpu / max(proxied["requests"], 1),
        "bytes_equal": proxied["bytes"] * direct["requests"] == direct["bytes"] * proxied["requests"] or "push" in case,
    }
    if per_bytes:
        result["cpu_ms_per_mb"] = 1000 * cpu / max(proxied["requests"] * per_bytes / MB, 1e-9)
    if peak is not None:
        result["rss_growth_mib"] = web.peak_growth_mib(peak)
    if reference is not None:
        base = f"http://127.0.0.1:{reference.port}"
        load(base, case, min(seconds, 1.0), count=2 if big else None)
        cpu0 = reference.cpu_seconds()
        before = load(base, case, seconds, count=count)
        result["reference_cpu_ms_per_request"] = 1000 * (reference.cpu_seconds() - cpu0) / max(before["requests"], 1)
        result["reference_rate"] = before["rate"]
        result["cpu_ratio_to_reference"] = result["cpu_ms_per_request"] / max(result["reference_cpu_ms_per_request"], 1e-9)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--upstreams", default="fast,nextcloud")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--reference", default="", help="a checkout of the code before (e.g. a git worktree): "
                        "its web process is measured in the same run, and the CPU ratio new/reference reported")
    options = parser.parse_args()
    common.clean_bench_db()
    load_before = os.getloadavg()
    results: dict = {"versions": common.versions(), "load_before": load_before, "web_workers": options.web_workers,
                     "runs": options.runs, "seconds": options.seconds, "upstreams": {}}
    print(json.dumps(results["versions"]))
    print(f"load average before: {load_before[0]:.2f}")
    for upstream_name in options.upstreams.split(","):
        upstream = Upstream(upstream_name)
        web = Web(upstream.url, common.free_port(), options.web_workers)
        reference = (Web(upstream.url, common.free_port(), options.web_workers, cwd=Path(options.reference),
                         label="reference") if options.reference else None)
        table = results["upstreams"][upstream_name] = {}
        try:
            print(f"\n== upstream {upstream_name} ({' '.join(UPSTREAMS[upstream_name]) or 'answers at once'})")
            for case in options.cases.split(","):
                if upstream_name == "nextcloud" and case in LARGE:
                    continue  # a body stream: the upstream's per-request delay does not matter
                runs = [measure(web, upstream, case, options.seconds, reference) for _ in range(options.runs)]
                table[case] = {"runs": runs}
                summary = {key: statistics.median(r[key] for r in runs)
                           for key in ("cpu_ms_per_request", "cpu_ms_per_mb", "ratio", "direct_rate", "proxied_rate",
                                       "rss_growth_mib", "reference_cpu_ms_per_request", "cpu_ratio_to_reference",
                                       "reference_rate") if key in runs[0] and runs[0][key] is not None}
                table[case]["median"] = summary
                problems = [r for r in runs if r["errors"] or r["non_2xx"] or not r["bytes_equal"]]
                line = (f"  {case:14s} CPU {summary['cpu_ms_per_request']:.3f} ms/request"
                        f" ({', '.join(format(r['cpu_ms_per_request'], '.3f') for r in runs)})")
                if "cpu_ms_per_mb" in summary:
                    line += f", {summary['cpu_ms_per_mb']:.3f} ms/MB"
                line += (f"  proxied {summary['proxied_rate']:.0f}/s vs direct {summary['direct_rate']:.0f}/s"
                         f" = {summary['ratio']:.2f}")
                if "rss_growth_mib" in summary:
                    line += f", peak RSS growth {summary['rss_growth_mib']:.1f} MiB"
                if "reference_cpu_ms_per_request" in summary:
                    line += (f"; reference {summary['reference_cpu_ms_per_request']:.3f} ms/request"
                             f" ({summary['reference_rate']:.0f}/s), CPU ratio {summary['cpu_ratio_to_reference']:.2f}")
                if problems:
                    line += f"  PROBLEMS: {[(r['errors'], r['non_2xx'], r['bytes_equal']) for r in problems]}"
                print(line, flush=True)
        finally:
            web.stop()
            if reference is not None:
                reference.stop()
            upstream.stop()
    results["load_after"] = os.getloadavg()
    print(f"\nload average after: {results['load_after'][0]:.2f}")
    print(f"saved {common.save_json(time.strftime('gateway-%Y%m%d-%H%M%S.json'), results)}")
    common.clean_bench_db()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

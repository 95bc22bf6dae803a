"""Delivery throughput: one warm worker process fans one change out to N subscriptions.

    .venv/bin/python bench/delivery.py                      # the full benchmark (0 ms and 50 ms)
    .venv/bin/python bench/delivery.py --latencies 0 --runs 3   # quicker
    .venv/bin/python bench/delivery.py --sweep              # ours only, several concurrency settings

"Ours": a long-lived `python -m app.cli worker` (RQ SimpleWorker, JSON serializer)
is started and warmed up first (one untimed delivery). Each timed run submits one
change through ChangeIngestor.submit (the path the webhook uses); the time runs from
just before submit() to the receiver's receipt of the N-th push.

Baseline, measured in the same run against the same receiver: a plain loop of
pywebpush.webpush(subscription_info, data=<the same push-message XML>,
vapid_private_key=<PEM path>, vapid_claims={"sub": ...} (a fresh dict per call),
ttl=86400, requests_session=<one shared requests.Session>), timed from the first
call to the receiver's receipt of the last push.

Results go to stdout and bench/out/delivery-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SABRE = "http://sabre.io/ns/sync/"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (its threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        import os

        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def job_times(services, topic: str) -> tuple[float | None, float | None]:
    """started_at and ended_at (Unix seconds) of the newest finished delivery job of the topic."""
    from rq.job import Job
    from rq.registry import FinishedJobRegistry
    from rq.serializers import JSONSerializer

    registry = FinishedJobRegistry(queue=services.queue)
    best = None
    for job_id in registry.get_job_ids():
        if topic not in job_id:
            continue
        job = Job.fetch(job_id, connection=services.redis, serializer=JSONSerializer)
        if job.started_at and (best is None or job.started_at > best.started_at):
            best = job
    if best is None:
        return None, None
    from datetime import timezone

    def unix(moment):
        return moment.replace(tzinfo=timezone.utc).timestamp() if moment.tzinfo is None else moment.timestamp()

    return unix(best.started_at), unix(best.ended_at) if best.ended_at else None


class Bench:
    def __init__(self, args, latency_ms: float, concurrency: int, per_origin: int):
        self.args = args
        self.latency_ms = latency_ms
        self.concurrency = concurrency
        self.per_origin = per_origin
        self.token = 1000
        self.env = common.bench_env(
            PUSH_CONCURRENCY=concurrency,
            PUSH_PER_ORIGIN_CONCURRENCY=per_origin,
            # One topic gets a change per run; the benchmark measures fan-out, not the rate limit.
            PUSH_MIN_INTERVAL_MS=0,
            PUSH_COALESCE_MS=0,
            LOG_LEVEL="info",
        )
        if args.worker_pythonpath:  # experiments only, e.g. hiredis installed with pip --target
            self.env["PYTHONPATH"] = args.worker_pythonpath

    def __enter__(self):
        common.clean_db12()
        self.receiver = common.Receiver(self.latency_ms)
        self.worker = None
        try:
            self.services = common.services_for(self.env)
            started = time.time()
            self.topic, self.subscriptions, _ = common.make_subscriptions(
                self.services, self.receiver, "calendars/bench/fanout", self.args.subs
            )
            self.insert_seconds = time.time() - started
            self.worker = common.start_worker(self.env, name=f"worker-{self.latency_ms:g}ms",
                                              cwd=self.args.worker_cwd or common.ROOT)
            common.wait_for_worker(self.services, self.worker)
            self.ours(warmup=True)  # pools, VAPID header, imports: a long-lived worker has them
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for proc in (self.worker, self.receiver):
            if proc is not None:
                proc.stop()
        common.clean_db12()

    def message(self) -> bytes:
        from app.protocol.message import build_push_message

        return build_push_message(self.topic, content=True, property_update=False, sync_token=f"{SABRE}{self.token}")

    def ours(self, warmup: bool = False) -> dict:
        from app.changes import QUEUED, ChangeIngestor
        from app.protocol.subscription import Change

        n = len(self.subscriptions)
        self.receiver.reset()
        self.token += 1
        ingestor = ChangeIngestor(self.services)
        worker_cpu0, receiver_cpu0 = cpu_seconds(self.worker.pid), cpu_seconds(self.receiver.proc.pid)
        t0 = time.time()
        outcome = ingestor.submit(Change(topic=self.topic, content_depth="1", sync_token=f"{SABRE}{self.token}"))
        assert outcome == QUEUED, outcome
        stats = self.receiver.wait(n, timeout=self.args.timeout)
        if stats["count"] < n:
            raise RuntimeError(f"only {stats['count']} of {n} pushes arrived within {self.args.timeout} s")
        seconds = stats["last"] / 1000 - t0
        while (self.services.store.delivered_token(self.topic) or 0) < self.token:  # the job's bookkeeping
            time.sleep(0.005)
        started = ended = None
        deadline = time.time() + 10
        while ended is None and time.time() < deadline:
            started, ended = job_times(self.services, self.topic)
            if started is not None and started < t0:
                started = ended = None  # the previous run's job
            if ended is None:
                time.sleep(0.01)
        job_seconds = (ended - t0) if ended else float("nan")
        worker_cpu = cpu_seconds(self.worker.pid) - worker_cpu0
        receiver_cpu = cpu_seconds(self.receiver.proc.pid) - receiver_cpu0
        time.sleep(0.2)
        extra = self.receiver.stats()["count"] - n
        result = dict(
            kind="ours", pushes=n, seconds=seconds, rate=n / seconds, job_seconds=job_seconds,
            first_push_ms=(stats["first"] / 1000 - t0) * 1000,
            queue_wait_ms=((started - t0) * 1000) if started else None,
            send_phase_rate=n / (stats["last"] / 1000 - stats["first"] / 1000), worker_cpu_s=worker_cpu, receiver_cpu_s=receiver_cpu,
            extra_pushes=extra,
        )
        if not warmup:
            print(
                f"  ours      {n:5d} pushes  {seconds:7.3f} s  {n / seconds:8.1f}/s   job started after "
                f"{result['queue_wait_ms'] or float('nan'):.1f} ms, first push after {result['first_push_ms']:.1f} ms "
                f"(first..last push {result['send_phase_rate']:.0f}/s), job done {job_seconds:.3f} s, worker CPU {worker_cpu:.2f} s, "
                f"receiver CPU {receiver_cpu:.2f} s",
                flush=True,
            )
        return result

    def baseline(self, count: int) -> dict:
        import requests
        from pywebpush import webpush

        subscriptions = self.subscriptions[:count]
        data = self.message()
        pem = self.env["VAPID_PRIVATE_KEY_FILE"]
        session = requests.Session()
        self.receiver.reset()
        cpu0, receiver_cpu0 = time.process_time(), cpu_seconds(self.receiver.proc.pid)
        t0 = time.time()
        for s in subscriptions:
            webpush(
                {"endpoint": s.push_resource, "keys": {"p256dh": s.public_key, "auth": s.auth_secret}},
                data=data,
                vapid_private_key=pem,
                vapid_claims={"sub": common.VAPID_SUBJECT},
                ttl=86400,
                requests_session=session,
            )
        stats = self.receiver.wait(count, timeout=60)
        seconds = stats["last"] / 1000 - t0
        cpu = time.process_time() - cpu0
        receiver_cpu = cpu_seconds(self.receiver.proc.pid) - receiver_cpu0
        session.close()
        print(
            f"  baseline  {count:5d} pushes  {seconds:7.3f} s  {count / seconds:8.1f}/s   client CPU {cpu:.2f} s, "
            f"receiver CPU {receiver_cpu:.2f} s",
            flush=True,
        )
        return dict(kind="baseline", pushes=count, seconds=seconds, rate=count / seconds, client_cpu_s=cpu,
                    receiver_cpu_s=receiver_cpu)


def receiver_capacity(seconds: float = 5.0, connections: int = 64) -> dict:
    """How many pushes/s the receiver takes from a Node client on the same 2 cores."""
    receiver = common.Receiver(0)
    try:
        out = subprocess.run(
            ["node", str(common.BENCH / "loadgen.js"), receiver.endpoint("capacity"), str(connections), str(seconds)],
            capture_output=True, text=True, timeout=seconds + 30,
        )
        result = json.loads(out.stdout)
        result["receiver_counted"] = receiver.stats()["count"]
        return result
    finally:
        receiver.stop()


def summarize(runs: list, kind: str) -> dict:
    rates = [r["rate"] for r in runs if r["kind"] == kind]
    return dict(runs=len(rates), rates=[round(x, 1) for x in rates], median=common.median(rates),
                min=min(rates) if rates else None, max=max(rates) if rates else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subs", type=int, default=5000)
    parser.add_argument("--latencies", default="0,50", help="added receiver latency in ms, comma-separated")
    parser.add_argument("--runs", type=int, default=7, help="timed runs at 0 ms (each: one baseline + one ours)")
    parser.add_argument("--runs-latency", type=int, default=5, help="timed runs when latency > 0")
    parser.add_argument("--baseline-0", type=int, default=5000, help="baseline messages at 0 ms")
    parser.add_argument("--baseline-latency", type=int, default=200, help="baseline messages when latency > 0")
    parser.add_argument("--concurrency", type=int, default=256, help="PUSH_CONCURRENCY for the worker")
    parser.add_argument("--per-origin", type=int, default=256, help="PUSH_PER_ORIGIN_CONCURRENCY for the worker")
    parser.add_argument("--concurrency-0", type=int, default=None, help="PUSH_CONCURRENCY at 0 ms (default --concurrency)")
    parser.add_argument("--per-origin-0", type=int, default=None, help="per-origin bound at 0 ms (default --per-origin)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--sweep", action="store_true", help="ours only, over --sweep-settings")
    parser.add_argument("--sweep-settings", default="32/32,64/64,128/128,256/256,512/512",
                        help="CONCURRENCY/PER_ORIGIN pairs for --sweep")
    parser.add_argument("--sweep-runs", type=int, default=3)
    parser.add_argument("--no-capacity-check", action="store_true")
    parser.add_argument("--worker-cwd", default="",
                        help="experiment: run the worker from another checkout (e.g. one with the old app/delivery files)")
    parser.add_argument("--worker-pythonpath", default="",
                        help="experiment: PYTHONPATH for the worker process (e.g. a --target dir holding hiredis)")
    args = parser.parse_args()

    report = dict(started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), versions=common.versions(), args=vars(args), results={},
                  loadavg_before=Path("/proc/loadavg").read_text().split()[:3])
    print(json.dumps(report["versions"]))
    if not args.no_capacity_check:
        capacity = receiver_capacity()
        report["receiver_capacity"] = capacity
        print(f"receiver capacity (Node client, 64 keep-alive connections, same 2 cores): {capacity['rate']:.0f} req/s")

    latencies = [float(x) for x in args.latencies.split(",") if x.strip()]
    if args.sweep:
        for latency in latencies:
            for pair in args.sweep_settings.split(","):
                concurrency, per_origin = (int(x) for x in pair.split("/"))
                print(f"\n== sweep: latency {latency:g} ms, PUSH_CONCURRENCY={concurrency}, "
                      f"PUSH_PER_ORIGIN_CONCURRENCY={per_origin}", flush=True)
                with Bench(args, latency, concurrency, per_origin) as bench:
                    runs = [bench.ours() for _ in range(args.sweep_runs)]
                key = f"sweep {latency:g}ms {concurrency}/{per_origin}"
                report["results"][key] = dict(latency_ms=latency, concurrency=concurrency, per_origin=per_origin,
                                              ours=summarize(runs, "ours"), raw=runs)
                print(f"   median {report['results'][key]['ours']['median']:.1f}/s")
        path = common.save_json(f"delivery-sweep-{time.strftime('%Y%m%d-%H%M%S')}.json", report)
        print(f"\nsaved {path}")
        return 0

    for latency in latencies:
        concurrency = args.concurrency_0 if latency == 0 and args.concurrency_0 else args.concurrency
        per_origin = args.per_origin_0 if latency == 0 and args.per_origin_0 else args.per_origin
        runs_n = args.runs if latency == 0 else args.runs_latency
        baseline_n = args.baseline_0 if latency == 0 else args.baseline_latency
        print(f"\n== latency {latency:g} ms: {args.subs} subscriptions, PUSH_CONCURRENCY={concurrency}, "
              f"PUSH_PER_ORIGIN_CONCURRENCY={per_origin}; baseline on {baseline_n} messages", flush=True)
        with Bench(args, latency, concurrency, per_origin) as bench:
            print(f"  ({args.subs} subscriptions inserted in {bench.insert_seconds:.1f} s; worker warmed up)")
            runs = []
            for _ in range(runs_n):
                runs.append(bench.baseline(baseline_n))
                time.sleep(0.3)
                runs.append(bench.ours())
                time.sleep(0.3)
        ours, baseline = summarize(runs, "ours"), summarize(runs, "baseline")
        ratio = ours["median"] / baseline["median"]
        report["results"][f"{latency:g}ms"] = dict(
            latency_ms=latency, concurrency=concurrency, per_origin=per_origin, subscriptions=args.subs,
            baseline_messages=baseline_n, ours=ours, baseline=baseline, ratio=ratio, raw=runs,
        )
        print(f"  median ours {ours['median']:.1f}/s, baseline {baseline['median']:.1f}/s, ratio {ratio:.2f}x")

    print("\nsummary")
    for key, r in report["results"].items():
        print(f"  {key:>6}: ours {r['ours']['median']:8.1f}/s  baseline {r['baseline']['median']:7.1f}/s  "
              f"ratio {r['ratio']:6.2f}x   ({r['ours']['runs']} runs; C={r['concurrency']}, per-origin={r['per_origin']})")
    path = common.save_json(f"delivery-{time.strftime('%Y%m%d-%H%M%S')}.json", report)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

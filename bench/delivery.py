"""Delivery throughput: one warm worker process per sender fans one change out to N subscriptions.

    .venv/bin/python bench/delivery.py                      # the full benchmark (0 ms and 50 ms)
    .venv/bin/python bench/delivery.py --latencies 0 --runs 3   # quicker
    .venv/bin/python bench/delivery.py --senders aiohttp    # one sender only
    .venv/bin/python bench/delivery.py --sweep              # no baseline, several concurrency settings

Senders (SENDER_WORKERS): "hand-written" is the service's worker (`python -m app.cli worker`),
whose sender (app/delivery/sender.py) has its own HTTP/1.1 client; "aiohttp" is the same worker
sending with the aiohttp sender measured for issue 10 (bench/aiohttp_sender.py, through
bench/aiohttp_worker.py). Each sender gets its own long-lived worker, Redis key prefix and queue,
with its own copy of the N subscriptions (all on the one receiver), and is warmed up first (one
untimed delivery). Each timed run submits one change through ChangeIngestor.submit (the path the
webhook uses); the time runs from just before submit() to the receiver's receipt of the N-th push.

Baseline, measured in the same run against the same receiver: a plain loop of
pywebpush.webpush(subscription_info, data=<the same push-message XML>,
vapid_private_key=<PEM path>, vapid_claims={"sub": ...} (a fresh dict per call),
ttl=86400, requests_session=<one shared requests.Session>), timed from the first
call to the receiver's receipt of the last push. Rounds alternate: baseline, then every sender
(their order rotates from round to round).

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
from datetime import UTC

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

    def unix(moment):
        return moment.replace(tzinfo=UTC).timestamp() if moment.tzinfo is None else moment.timestamp()

    return unix(best.started_at), unix(best.ended_at) if best.ended_at else None


SENDER_WORKERS = {
    "hand-written": [common.PYTHON, "-m", "app.cli", "worker"],
    "aiohttp": [common.PYTHON, str(common.BENCH / "aiohttp_worker.py")],
}


class Arm:
    """One sender: its worker process, key prefix, queue and subscriptions."""

    def __init__(self, bench: Bench, sender: str, number: int):
        self.bench = bench
        self.sender = sender
        self.env = dict(bench.env, REDIS_PREFIX=f"dp{number}:", QUEUE_NAME=f"davpush-bench-{number}")
        self.worker = None
        self.token = 1000

    def start(self) -> None:
        args = self.bench.args
        self.services = common.services_for(self.env)
        self.topic, self.subscriptions, _ = common.make_subscriptions(
            self.services, self.bench.receiver, "calendars/bench/fanout", args.subs, prefix=f"{self.sender[0]}")
        name = f"worker-{self.sender}-{self.bench.latency_ms:g}ms"
        if self.sender == "reference":  # the service's worker as it is in another checkout
            command, cwd = SENDER_WORKERS["hand-written"], args.reference_checkout
        else:
            command, cwd = SENDER_WORKERS[self.sender], args.worker_cwd or common.ROOT
        self.worker = common.Proc(command, env=self.env, log_name=f"{name}.log", cwd=cwd)
        common.wait_for_worker(self.services, self.worker)
        self.run(warmup=True)  # pools, VAPID header, imports: a long-lived worker has them

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()

    def message(self) -> bytes:
        from app.protocol.message import build_push_message

        return build_push_message(self.topic, content=True, property_update=False, sync_token=f"{SABRE}{self.token}")

    def run(self, warmup: bool = False) -> dict:
        from app.changes.ingest import QUEUED, ChangeIngestor
        from app.protocol.subscription import Change

        receiver, timeout = self.bench.receiver, self.bench.args.timeout
        n = len(self.subscriptions)
        receiver.reset()
        self.token += 1
        ingestor = ChangeIngestor(self.services)
        worker_cpu0, receiver_cpu0 = cpu_seconds(self.worker.pid), cpu_seconds(receiver.proc.pid)
        t0 = time.time()
        outcome = ingestor.submit(Change(topic=self.topic, content_depth="1", sync_token=f"{SABRE}{self.token}"))
        assert outcome == QUEUED, outcome
        stats = receiver.wait(n, timeout=timeout)
        if stats["count"] < n:
            raise RuntimeError(f"{self.sender}: only {stats['count']} of {n} pushes arrived within {timeout} s")
        seconds = stats["last"] / 1000 - t0
        deadline = time.time() + timeout
        while (self.services.store.delivered_token(self.topic) or 0) < self.token:  # the job's bookkeeping
            if time.time() > deadline:
                raise RuntimeError(f"{self.sender}: the job did not record its sync-token (was the DB flushed?)")
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
        receiver_cpu = cpu_seconds(receiver.proc.pid) - receiver_cpu0
        time.sleep(0.2)
        extra = receiver.stats()["count"] - n
        result = dict(
            kind=self.sender, pushes=n, seconds=seconds, rate=n / seconds, job_seconds=job_seconds,
            first_push_ms=(stats["first"] / 1000 - t0) * 1000,
            queue_wait_ms=((started - t0) * 1000) if started else None,
            send_phase_rate=n / (stats["last"] / 1000 - stats["first"] / 1000), worker_cpu_s=worker_cpu,
            receiver_cpu_s=receiver_cpu, extra_pushes=extra,
        )
        if not warmup:
            print(
                f"  {self.sender:12s} {n:5d} pushes  {seconds:7.3f} s  {n / seconds:8.1f}/s   first push after "
                f"{result['first_push_ms']:.1f} ms (first..last push {result['send_phase_rate']:.0f}/s), "
                f"job done {job_seconds:.3f} s, worker CPU {worker_cpu:.2f} s, receiver CPU {receiver_cpu:.2f} s",
                flush=True,
            )
        return result


class Bench:
    def __init__(self, args, latency_ms: float, concurrency: int, per_origin: int, senders: list[str]):
        self.args = args
        self.latency_ms = latency_ms
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
        self.senders = senders

    def __enter__(self):
        common.clean_bench_db()
        self.receiver = common.Receiver(self.latency_ms)
        self.arms: list[Arm] = []
        try:
            started = time.time()
            for number, sender in enumerate(self.senders):
                arm = Arm(self, sender, number)
                self.arms.append(arm)
                arm.start()
            self.setup_seconds = time.time() - started
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for arm in self.arms:
            arm.stop()
        self.receiver.stop()
        common.clean_bench_db()

    def baseline(self, count: int) -> dict:
        import requests
        from pywebpush import webpush

        arm = self.arms[0]
        subscriptions = arm.subscriptions[:count]
        data = arm.message()
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
            f"  {'baseline':12s} {count:5d} pushes  {seconds:7.3f} s  {count / seconds:8.1f}/s   client CPU {cpu:.2f} s, "
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
    parser.add_argument("--senders", default=",".join(SENDER_WORKERS), help="comma-separated, of: " + ", ".join(SENDER_WORKERS))
    parser.add_argument("--runs", type=int, default=7, help="timed rounds at 0 ms (each: one baseline + one run per sender)")
    parser.add_argument("--runs-latency", type=int, default=5, help="timed runs when latency > 0")
    parser.add_argument("--baseline-0", type=int, default=5000, help="baseline messages at 0 ms")
    parser.add_argument("--baseline-latency", type=int, default=200, help="baseline messages when latency > 0")
    parser.add_argument("--concurrency", type=int, default=256, help="PUSH_CONCURRENCY for the worker")
    parser.add_argument("--per-origin", type=int, default=256, help="PUSH_PER_ORIGIN_CONCURRENCY for the worker")
    parser.add_argument("--concurrency-0", type=int, default=None, help="PUSH_CONCURRENCY at 0 ms (default --concurrency)")
    parser.add_argument("--per-origin-0", type=int, default=None, help="per-origin bound at 0 ms (default --per-origin)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--sweep", action="store_true", help="no baseline, over --sweep-settings")
    parser.add_argument("--sweep-settings", default="32/32,64/64,128/128,256/256,512/512",
                        help="CONCURRENCY/PER_ORIGIN pairs for --sweep")
    parser.add_argument("--sweep-runs", type=int, default=3)
    parser.add_argument("--no-capacity-check", action="store_true")
    parser.add_argument("--worker-cwd", default="",
                        help="experiment: run the worker from another checkout (e.g. one with the old app/delivery files)")
    parser.add_argument("--reference-checkout", default="",
                        help="adds the sender \"reference\": the service's worker run from this checkout "
                             "(e.g. a git worktree of an earlier commit), for a before/after comparison in one run")
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

    senders = [x.strip() for x in args.senders.split(",") if x.strip()]
    if args.reference_checkout and "reference" not in senders:
        senders.append("reference")
    unknown = [x for x in senders if x not in SENDER_WORKERS and x != "reference"]
    if unknown:
        parser.error(f"unknown sender(s) {unknown}; known: {', '.join(SENDER_WORKERS)}")
    latencies = [float(x) for x in args.latencies.split(",") if x.strip()]
    if args.sweep:
        for latency in latencies:
            for pair in args.sweep_settings.split(","):
                concurrency, per_origin = (int(x) for x in pair.split("/"))
                print(f"\n== sweep: latency {latency:g} ms, PUSH_CONCURRENCY={concurrency}, "
                      f"PUSH_PER_ORIGIN_CONCURRENCY={per_origin}", flush=True)
                with Bench(args, latency, concurrency, per_origin, senders) as bench:
                    runs = [arm.run() for _ in range(args.sweep_runs) for arm in bench.arms]
                key = f"sweep {latency:g}ms {concurrency}/{per_origin}"
                report["results"][key] = dict(latency_ms=latency, concurrency=concurrency, per_origin=per_origin,
                                              senders={x: summarize(runs, x) for x in senders}, raw=runs)
                for x in senders:
                    print(f"   {x}: median {report['results'][key]['senders'][x]['median']:.1f}/s")
        path = common.save_json(f"delivery-sweep-{time.strftime('%Y%m%d-%H%M%S')}.json", report)
        print(f"\nsaved {path}")
        return 0

    for latency in latencies:
        concurrency = args.concurrency_0 if latency == 0 and args.concurrency_0 else args.concurrency
        per_origin = args.per_origin_0 if latency == 0 and args.per_origin_0 else args.per_origin
        runs_n = args.runs if latency == 0 else args.runs_latency
        baseline_n = args.baseline_0 if latency == 0 else args.baseline_latency
        print(f"\n== latency {latency:g} ms: {args.subs} subscriptions per sender, PUSH_CONCURRENCY={concurrency}, "
              f"PUSH_PER_ORIGIN_CONCURRENCY={per_origin}; baseline on {baseline_n} messages", flush=True)
        with Bench(args, latency, concurrency, per_origin, senders) as bench:
            print(f"  (subscriptions inserted and workers warmed up in {bench.setup_seconds:.1f} s)")
            runs = []
            for round_number in range(runs_n):
                runs.append(bench.baseline(baseline_n))
                time.sleep(0.3)
                shift = round_number % len(bench.arms)
                for arm in bench.arms[shift:] + bench.arms[:shift]:
                    runs.append(arm.run())
                    time.sleep(0.3)
        baseline = summarize(runs, "baseline")
        result = dict(latency_ms=latency, concurrency=concurrency, per_origin=per_origin, subscriptions=args.subs,
                      baseline_messages=baseline_n, baseline=baseline, senders={}, raw=runs,
                      loadavg_after=Path("/proc/loadavg").read_text().split()[:3])
        for sender in senders:
            summary = summarize(runs, sender)
            summary["ratio_to_baseline"] = summary["median"] / baseline["median"]
            result["senders"][sender] = summary
            print(f"  median {sender} {summary['median']:.1f}/s, ratio to the baseline ({baseline['median']:.1f}/s) "
                  f"{summary['ratio_to_baseline']:.2f}x")
        if len(senders) > 1:
            first, second = senders[0], senders[1]
            result[f"{first}/{second}"] = result["senders"][first]["median"] / result["senders"][second]["median"]
            print(f"  {first} / {second}: {result[f'{first}/{second}']:.2f}")
        report["results"][f"{latency:g}ms"] = result

    print("\nsummary")
    for key, r in report["results"].items():
        cells = "  ".join(f"{x} {r['senders'][x]['median']:8.1f}/s ({r['senders'][x]['ratio_to_baseline']:.2f}x)"
                          for x in senders)
        print(f"  {key:>6}: {cells}  baseline {r['baseline']['median']:7.1f}/s   ({r['baseline']['runs']} rounds; "
              f"C={r['concurrency']}, per-origin={r['per_origin']})")
    path = common.save_json(f"delivery-{time.strftime('%Y%m%d-%H%M%S')}.json", report)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

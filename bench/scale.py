"""Scale: fan-out across 1, 2 and 4 workers, and the Redis memory of 100,000 subscriptions.

    .venv/bin/python bench/scale.py                           # everything (~9 min on 2 busy cores)
    .venv/bin/python bench/scale.py --skip-memory --rounds 3  # the fan-out only
    .venv/bin/python bench/scale.py --skip-fanout --skip-small --mixes 20000x5x1

Fan-out (issue 11): 20,000 subscriptions spread over --topics calendars (default 40 × 500: one
change to one topic is one delivery job, run by one worker, so several workers can only share a
fan-out that spans several topics). For each worker count (--workers, default 1,2,4) an "arm" has
its own Redis key prefix, RQ queue, copy of the subscriptions (all on one Node receiver,
bench/receiver.js) and that many `python -m app.cli worker` processes (the `davpush worker` entry
point), started from this checkout and warmed up (--warmup untimed rounds) before the timed
rounds. A timed run changes every topic of the arm through ChangeIngestor.submit (the webhook's
path) and lasts from the first submit to the receiver having counted every push; rounds rotate the
order of the arms. PUSH_MIN_INTERVAL_MS=0, PUSH_COALESCE_MS=0, PUSH_CONCURRENCY=--concurrency per
worker and PUSH_PER_ORIGIN_CONCURRENCY=--per-origin (default 1024, the most allowed): the origin
limit holds across all workers together (slots leased in Redis), and 4 × 256 ≤ 1024, so the bound
is not what is measured.

Per run: pushes/s, worker CPU (utime+stime of the arm's workers) and Redis CPU (INFO cpu
used_cpu_sys+used_cpu_user delta, from the first submit until every fan-out record, queued and
started job is gone). The Redis server is shared with other benchmarks, so each run first measures
the server's background CPU rate for --idle seconds with every worker idle and the "net" Redis CPU
subtracts that rate over the run; both are reported.

Small topics (--small-topics × --small-subs, default 1,000 × 3 on --small-workers 4): the same
measurement with the shape a real installation has (a calendar has a few subscribers, one per
device), giving Redis CPU per change, where the per-job cost (submit, RQ job, claim, fan-out
record) is not spread over 500 pushes; the INFO commandstats delta shows where its Redis time goes.
Afterwards the transient keys a change leaves behind (delivered:/last: per topic, the RQ job hash,
a webhook's seen: key) are measured.

Memory: --mixes USERSxCOLLECTIONSxDEVICES (default 20000x5x1 and 6667x5x3, ~100,000 each):
subscriptions inserted one by one with Store.upsert (limit 250, as the web app does) with
realistic field lengths (a Nextcloud principal and collection path, a 24-character id, an
FCM-length endpoint, real P-256 keys, an https Location), counted as the sum of MEMORY USAGE over
every key of the DB (by key class: subscription hashes, topic zsets, user zsets, expiry zset,
dedupe hash) and as the INFO used_memory delta (server-wide, noisy on a shared Redis), against
bare HSETs of the same fields.

Results go to stdout and bench/out/scale-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import hashlib
import secrets
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from delivery import cpu_seconds  # noqa: E402

SABRE = "http://sabre.io/ns/sync/"


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def redis_cpu(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def commandstats(client) -> dict:
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for k, v in client.info("commandstats").items()}


def commandstats_delta(before: dict, after: dict, per: int, top: int = 15) -> list:
    """The commands that used the most Redis time between two INFO commandstats (server-wide), per `per`."""
    rows = []
    for name, (calls, usec) in after.items():
        calls0, usec0 = before.get(name, (0, 0))
        if usec > usec0:
            rows.append(dict(command=name, calls_per=(calls - calls0) / per, usec_per=(usec - usec0) / per))
    rows.sort(key=lambda r: -r["usec_per"])
    return rows[:top]


def used_memory(client) -> int:
    return int(client.info("memory")["used_memory"])


def key_class(key: str) -> str:
    """`dp4:sub:abc` -> `sub`, `rq:job:x` -> `rq:job`, `dp4:expiry` -> `expiry`."""
    if key.startswith("rq:"):
        return ":".join(key.split(":")[:2])
    parts = key.split(":")
    return parts[1] if len(parts) > 1 else parts[0]


def key_bytes(client, match: str | None = None) -> tuple[int, int, dict]:
    """Sum of MEMORY USAGE over the DB's keys (or those matching), keys, {class: [bytes, keys]}."""
    total = keys = 0
    by_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    batch: list[bytes] = []

    def flush():
        nonlocal total, keys
        pipe = client.pipeline(transaction=False)
        for key in batch:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(batch, pipe.execute(), strict=True):
            size = size or 0
            total += size
            keys += 1
            entry = by_class[key_class(key.decode())]
            entry[0] += size
            entry[1] += 1
        batch.clear()

    for key in client.scan_iter(match=match, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()
    return total, keys, dict(by_class)


# -- memory of 100,000 subscriptions --------------------------------------------------------


def realistic_subscription(services, user_n: int, collection_n: int, device_n: int, now: int):
    from app.protocol.subscription import Subscription
    from app.protocol.topics import topic_for_collection
    from app.protocol.triggers import Triggers

    name = f"user{user_n:06d}"
    collection = f"calendars/{name}/calendar-{collection_n}"
    sub_id = secrets.token_urlsafe(18)  # what the web app uses
    _, p256dh, auth = common.client_keys()
    token = secrets.token_urlsafe(16)
    return Subscription(
        id=sub_id, user=f"/remote.php/dav/principals/users/{name}", collection=collection,
        topic=topic_for_collection(services.settings.secret_key, collection),
        href=f"/remote.php/dav/{collection}/",
        # an FCM-length endpoint (as the earlier measurement): ~190 characters
        push_resource=f"https://fcm.googleapis.com/fcm/send/{token}:APA91bH{'x' * 120}{device_n}",
        public_key=p256dh, auth_secret=auth, triggers=Triggers(content_depth="1"),
        expires=now + 7 * 86400 - (user_n % 86400), created=now,
        location=f"https://cloud.example.org/push/subscriptions/{sub_id}",
    )


def memory_mix(users: int, collections: int, devices: int) -> dict:
    import redis

    n = users * collections * devices
    print(f"\n== memory: {users:,} users × {collections} collections × {devices} subscriptions = {n:,} subscriptions",
          flush=True)
    common.clean_bench_db()
    client = redis.Redis.from_url(common.REDIS_URL)
    services = common.services_for(common.bench_env())
    now = int(time.time())
    fields = []
    try:
        before = used_memory(client)
        upsert_seconds = 0.0
        t0 = time.time()
        for u in range(users):
            for c in range(collections):
                for d in range(devices):
                    subscription = realistic_subscription(services, u, c, d, now)
                    t1 = time.perf_counter()
                    services.store.upsert(subscription, limit=250)
                    upsert_seconds += time.perf_counter() - t1
                    fields.append((subscription.id, subscription.to_fields()))
        insert_seconds = time.time() - t0
        ours_used = used_memory(client) - before
        ours_bytes, ours_keys, ours_classes = key_bytes(client)
        keys = services.store.keys
        encodings = {name: client.object("encoding", key).decode() for name, key in (
            ("sub", keys.sub(fields[0][0])), ("expiry", keys.expiry), ("dedupe", keys.dedupe),
            ("topic", keys.topic(fields[0][1]["topic"])),
            ("user", keys.user(keys.user_field(fields[0][1]["user"]))))}
        common.clean_bench_db()
        before = used_memory(client)
        pipe = client.pipeline(transaction=False)
        for i, (sub_id, f) in enumerate(fields):
            pipe.hset(keys.sub(sub_id), mapping=f)  # the same key names, the fields alone
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
        base_used = used_memory(client) - before
        base_bytes, base_keys, _ = key_bytes(client)
    finally:
        client.close()
        common.clean_bench_db()
    classes = {k: dict(keys=v[1], bytes=v[0], per_sub=v[0] / n) for k, v in sorted(ours_classes.items())}
    result = dict(
        users=users, collections_per_user=collections, subscriptions_per_collection=devices, subscriptions=n,
        insert_seconds=insert_seconds, upsert_rate=n / upsert_seconds, encodings=encodings,
        ours=dict(keys=ours_keys, memory_usage_bytes=ours_bytes, per_sub=ours_bytes / n, used_memory_delta=ours_used,
                  used_memory_per_sub=ours_used / n, by_class=classes),
        baseline=dict(keys=base_keys, memory_usage_bytes=base_bytes, per_sub=base_bytes / n,
                      used_memory_delta=base_used, used_memory_per_sub=base_used / n),
    )
    result["ratio_memory_usage"] = result["ours"]["per_sub"] / result["baseline"]["per_sub"]
    print(f"  MEMORY USAGE: {ours_bytes / n:.0f} B/subscription over {ours_keys:,} keys "
          f"(bare HSETs of the same fields {base_bytes / n:.0f} B -> {result['ratio_memory_usage']:.2f}x); "
          f"INFO used_memory delta {ours_used / n:.0f} B (bare {base_used / n:.0f} B)")
    print("  by key class: " + ", ".join(f"{k} {v['keys']:,} keys {v['per_sub']:.0f} B/sub" for k, v in classes.items()))
    print(f"  encodings {encodings}; Store.upsert {result['upsert_rate']:.0f}/s (the call alone); "
          f"insert loop {insert_seconds:.1f} s (P-256 key generation included)", flush=True)
    return result


# -- fan-out across workers ------------------------------------------------------------------


class Arm:
    """One configuration: its key prefix, queue, subscriptions and worker processes."""

    def __init__(self, name: str, receiver, args, workers: int, topics: int, per_topic: int):
        self.name, self.receiver, self.args = name, receiver, args
        self.n_workers, self.n_topics, self.per_topic = workers, topics, per_topic
        self.env = common.bench_env(
            REDIS_PREFIX=f"dp{name}:", QUEUE_NAME=f"davpush-scale-{name}",
            PUSH_CONCURRENCY=args.concurrency, PUSH_PER_ORIGIN_CONCURRENCY=args.per_origin,
            PUSH_MIN_INTERVAL_MS=0, PUSH_COALESCE_MS=0, LOG_LEVEL="info",
        )
        self.workers: list[common.Proc] = []
        self.topics: list[str] = []
        self.token = 1000

    @property
    def pushes(self) -> int:
        return self.n_topics * self.per_topic

    def insert(self) -> None:
        self.services = common.services_for(self.env)
        for t in range(self.n_topics):
            topic, _, _ = common.make_subscriptions(
                self.services, self.receiver, f"calendars/scale-{self.name}/cal{t:04d}", self.per_topic,
                prefix=f"{self.name}t{t:04d}-")
            self.topics.append(topic)

    def start_workers(self) -> None:
        for i in range(self.n_workers):
            proc = common.start_worker(self.env, name=f"worker-scale-{self.name}-{i}", cwd=common.ROOT)
            self.workers.append(proc)
        for proc in self.workers:
            common.wait_for_worker(self.services, proc)

    def stop(self) -> None:
        for proc in self.workers:
            proc.stop()

    def _idle(self, client) -> bool:
        from rq.registry import StartedJobRegistry

        queue = self.services.queue
        pipe = client.pipeline(transaction=False)
        pipe.zcard(f"{self.env['REDIS_PREFIX']}fanouts")
        pipe.llen(queue.key)
        pipe.zcard(StartedJobRegistry(queue=queue).key)
        return not any(pipe.execute())

    def run(self, client, warmup: bool = False) -> dict:
        from app.changes.ingest import QUEUED, ChangeIngestor
        from app.protocol.subscription import Change

        receiver, timeout, n = self.receiver, self.args.timeout, self.pushes
        receiver.reset()
        load = loadavg()
        idle0, idle_t0 = redis_cpu(client), time.time()
        time.sleep(self.args.idle)
        background = (redis_cpu(client) - idle0) / (time.time() - idle_t0)  # Redis CPU s per s, workers idle
        self.token += 1
        ingestor = ChangeIngestor(self.services)
        workers0 = [cpu_seconds(p.pid) for p in self.workers]
        receiver0 = cpu_seconds(receiver.proc.pid)
        redis0 = redis_cpu(client)
        t0 = time.time()
        for topic in self.topics:
            outcome = ingestor.submit(Change(topic=topic, content_depth="1", sync_token=f"{SABRE}{self.token}"))
            assert outcome == QUEUED, outcome
        submitted = time.time()
        stats = receiver.wait(n, timeout=timeout)
        if stats["count"] < n:
            raise RuntimeError(f"{self.name}: only {stats['count']} of {n} pushes arrived within {timeout} s")
        deadline = time.time() + timeout
        while not self._idle(client):  # every fan-out record, queued and started job gone
            if time.time() > deadline:
                raise RuntimeError(f"{self.name}: fan-outs or jobs still open {timeout} s after the last push")
            time.sleep(0.02)
        done = time.time()
        redis_used = redis_cpu(client) - redis0
        worker_cpu = [cpu_seconds(p.pid) - c for p, c in zip(self.workers, workers0, strict=True)]
        receiver_cpu = cpu_seconds(receiver.proc.pid) - receiver0
        seconds = stats["last"] / 1000 - t0
        redis_net = max(0.0, redis_used - background * (done - t0))
        time.sleep(0.2)
        extra = receiver.stats()["count"] - n
        result = dict(
            arm=self.name, workers=self.n_workers, topics=self.n_topics, pushes=n, seconds=seconds, rate=n / seconds,
            changes_rate=self.n_topics / seconds, submit_ms=(submitted - t0) * 1000,
            first_push_ms=(stats["first"] / 1000 - t0) * 1000, done_seconds=done - t0,
            worker_cpu_s=sum(worker_cpu), worker_cpu_each=[round(x, 2) for x in worker_cpu],
            receiver_cpu_s=receiver_cpu, redis_cpu_s=redis_used, redis_background_per_s=background,
            redis_cpu_net_s=redis_net, extra_pushes=extra, loadavg=load,
            worker_cpu_ms_per_1000=sum(worker_cpu) / n * 1e6, redis_ms_per_1000=redis_used / n * 1e6,
            redis_net_ms_per_1000=redis_net / n * 1e6, redis_net_ms_per_change=redis_net / self.n_topics * 1000,
        )
        if not warmup:
            print(
                f"  {self.n_workers} worker(s) {self.n_topics:4d}×{self.per_topic:<3d} {n:6d} pushes {seconds:6.2f} s "
                f"{n / seconds:7.0f}/s  first push {result['first_push_ms']:5.0f} ms, submits {result['submit_ms']:5.0f} ms | "
                f"worker CPU {sum(worker_cpu):5.2f} s {worker_cpu_list(worker_cpu)} | Redis CPU {redis_used:.3f} s "
                f"(net {redis_net:.3f} s, background {background * 1000:.1f} ms/s) | receiver CPU {receiver_cpu:.2f} s"
                f"{'' if not extra else f' | {extra} extra pushes'} | load {load[0]}",
                flush=True,
            )
        return result

    def transient_state(self, client) -> dict:
        """Bytes of the keys a change leaves behind for a while, per topic / per job."""
        from rq.registry import FinishedJobRegistry

        store = self.services.store
        fingerprint = hashlib.sha256(b"a webhook body").hexdigest()
        store.first_sighting(fingerprint)  # the web process keeps one per accepted webhook (1 h)
        out = {}
        for kind, ttl in (("delivered", "1 h after the change"), ("last", "1 h after the change")):
            pattern = store.keys.delivered("*") if kind == "delivered" else store.keys.last_delivery("*")
            total, keys, _ = key_bytes(client, pattern)
            out[kind] = dict(keys=keys, per_key=total / keys if keys else None, kept=ttl)
        total, keys, _ = key_bytes(client, store.keys.seen("*"))
        out["seen"] = dict(keys=keys, per_key=total / keys if keys else None, kept="1 h per accepted webhook")
        registry = FinishedJobRegistry(queue=self.services.queue)
        ids = registry.get_job_ids()[:2000]
        pipe = client.pipeline(transaction=False)
        for job_id in ids:
            pipe.memory_usage(f"rq:job:{job_id}", samples=0)
        sizes = [s for s in pipe.execute() if s]
        registry_bytes = client.memory_usage(registry.key, samples=0) or 0
        count = client.zcard(registry.key)
        out["rq_job"] = dict(keys=len(sizes), per_key=sum(sizes) / len(sizes) if sizes else None,
                             finished_registry_per_entry=registry_bytes / count if count else None,
                             kept="result_ttl 300 s")
        return out


def worker_cpu_list(values) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")" if len(values) > 1 else ""


def summarize(runs: list, base_rate: float | None) -> dict:
    rates = [r["rate"] for r in runs]
    out = dict(
        runs=len(runs), workers=runs[0]["workers"], topics=runs[0]["topics"], pushes=runs[0]["pushes"],
        rates=[round(x) for x in rates], median_rate=common.median(rates), min_rate=min(rates), max_rate=max(rates),
        median_seconds=common.median([r["seconds"] for r in runs]),
        median_changes_rate=common.median([r["changes_rate"] for r in runs]),
        median_first_push_ms=common.median([r["first_push_ms"] for r in runs]),
        median_worker_cpu_ms_per_1000=common.median([r["worker_cpu_ms_per_1000"] for r in runs]),
        median_redis_ms_per_1000=common.median([r["redis_ms_per_1000"] for r in runs]),
        median_redis_net_ms_per_1000=common.median([r["redis_net_ms_per_1000"] for r in runs]),
        median_redis_net_ms_per_change=common.median([r["redis_net_ms_per_change"] for r in runs]),
        median_receiver_cpu_s=common.median([r["receiver_cpu_s"] for r in runs]),
        median_redis_background_ms_per_s=common.median([r["redis_background_per_s"] * 1000 for r in runs]),
    )
    if base_rate:
        out["ratio_to_1_worker"] = out["median_rate"] / base_rate
    return out


def worker_code_path() -> str:
    """Where `import app` resolves for a worker started from common.ROOT (it must be this checkout)."""
    import subprocess

    out = subprocess.run([common.PYTHON, "-c", "import app; print(app.__file__)"], cwd=str(common.ROOT),
                         env=common.bench_env(), capture_output=True, text=True, check=True)
    return out.stdout.strip()


def fanout(args, report: dict) -> None:
    import redis

    worker_counts = [int(x) for x in args.workers.split(",") if x.strip()]
    code = worker_code_path()
    report["worker_code"] = code
    print(f"workers import app from {code}", flush=True)
    assert code.startswith(str(common.ROOT)), f"the workers would run {code}, not this checkout ({common.ROOT})"
    per_topic = args.subs // args.topics
    common.clean_bench_db()
    client = redis.Redis.from_url(common.REDIS_URL)
    receiver = common.Receiver(0)
    arms: list[Arm] = []
    small = None
    try:
        started = time.time()
        for k in worker_counts:
            arms.append(Arm(f"w{k}", receiver, args, k, args.topics, per_topic))
        if not args.skip_small:
            small = Arm("small", receiver, args, args.small_workers, args.small_topics, args.small_subs)
        for arm in arms + ([small] if small else []):
            arm.insert()
        inserted = time.time()
        for arm in arms + ([small] if small else []):
            arm.start_workers()
            for _ in range(args.warmup if arm is not small else 1):  # one round gives each small worker many jobs
                arm.run(client, warmup=True)
        report["setup"] = dict(insert_seconds=inserted - started, workers_and_warmup_seconds=time.time() - inserted)
        print(f"(subscriptions inserted in {inserted - started:.0f} s; workers started and warmed up "
              f"({args.warmup} untimed rounds each) in {time.time() - inserted:.0f} s)", flush=True)

        if arms:
            fanout_rounds(args, client, arms, per_topic, report)
        if small:
            small_rounds(args, client, small, report)
    finally:
        for arm in arms + ([small] if small else []):
            arm.stop()
        receiver.stop()
        client.close()
        common.clean_bench_db()


def fanout_rounds(args, client, arms: list, per_topic: int, report: dict) -> None:
    print(f"\n== fan-out of {args.topics * per_topic:,} subscriptions ({args.topics} topics × {per_topic}), "
          f"{args.rounds} rounds; PUSH_CONCURRENCY={args.concurrency} per worker, "
          f"PUSH_PER_ORIGIN_CONCURRENCY={args.per_origin} (all workers together)", flush=True)
    runs = defaultdict(list)
    for round_number in range(args.rounds):
        shift = round_number % len(arms)
        for arm in arms[shift:] + arms[:shift]:
            runs[arm.name].append(arm.run(client))
            time.sleep(0.3)
    base = common.median([r["rate"] for r in runs[arms[0].name]]) if arms[0].n_workers == 1 else None
    summary = {arm.name: summarize(runs[arm.name], base) for arm in arms}
    report["fanout"] = dict(subscriptions=args.topics * per_topic, topics=args.topics, per_topic=per_topic,
                            concurrency=args.concurrency, per_origin=args.per_origin, summary=summary,
                            raw=dict(runs), loadavg_after=loadavg())
    print("\n  workers  median pushes/s (min–max)   ratio to 1  worker CPU ms/1000  Redis CPU ms/1000 (net)")
    for arm in arms:
        s = summary[arm.name]
        print(f"  {s['workers']:7d}  {s['median_rate']:7.0f} ({s['min_rate']:.0f}–{s['max_rate']:.0f})"
              f"   {s.get('ratio_to_1_worker', float('nan')):9.2f}  {s['median_worker_cpu_ms_per_1000']:18.0f}"
              f"  {s['median_redis_ms_per_1000']:6.1f} ({s['median_redis_net_ms_per_1000']:.1f})", flush=True)


def small_rounds(args, client, small: Arm, report: dict) -> None:
    print(f"\n== small topics: {small.n_topics} topics × {small.per_topic} subscriptions, "
          f"{small.n_workers} workers, {args.small_rounds} rounds", flush=True)
    small_runs = []
    stats0 = commandstats(client)
    for _ in range(args.small_rounds):
        small_runs.append(small.run(client))
        time.sleep(0.3)
    stats1 = commandstats(client)
    per = small.n_topics * args.small_rounds
    commands = commandstats_delta(stats0, stats1, per)
    all_commands = commandstats_delta(stats0, stats1, per, top=1000)
    totals = dict(calls=sum(r["calls_per"] for r in all_commands), usec=sum(r["usec_per"] for r in all_commands))
    s = summarize(small_runs, None)
    state = small.transient_state(client)
    report["small"] = dict(topics=small.n_topics, per_topic=small.per_topic, workers=small.n_workers,
                           summary=s, transient_state=state, commands_per_change=commands,
                           commands_per_change_total=totals, raw=small_runs)
    print(f"  median {s['median_changes_rate']:.0f} changes/s ({s['median_rate']:.0f} pushes/s); Redis CPU "
          f"{s['median_redis_net_ms_per_change']:.3f} ms per change net "
          f"({s['median_redis_net_ms_per_1000']:.0f} ms per 1,000 pushes); worker CPU "
          f"{s['median_worker_cpu_ms_per_1000']:.0f} ms per 1,000 pushes")
    print(f"  Redis commands per change (INFO commandstats, server-wide, idle windows included): {totals['calls']:.0f} calls, "
          f"{totals['usec']:.0f} µs in commands; the most expensive: " + ", ".join(
        f"{r['command']} {r['calls_per']:.1f}× {r['usec_per']:.0f} µs" for r in commands[:10]))
    print("  transient keys: " + ", ".join(
        f"{k} {v['per_key']:.0f} B" for k, v in state.items() if v.get("per_key")), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated (the first should be 1)")
    parser.add_argument("--subs", type=int, default=20000, help="subscriptions of the fan-out")
    parser.add_argument("--topics", type=int, default=40, help="calendars the fan-out's subscriptions are spread over")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds per arm after its workers start")
    parser.add_argument("--idle", type=float, default=1.0, help="seconds of background Redis CPU measured before each run")
    parser.add_argument("--concurrency", type=int, default=256, help="PUSH_CONCURRENCY per worker")
    parser.add_argument("--per-origin", type=int, default=1024, help="PUSH_PER_ORIGIN_CONCURRENCY (all workers together)")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--small-topics", type=int, default=1000)
    parser.add_argument("--small-subs", type=int, default=3)
    parser.add_argument("--small-workers", type=int, default=4)
    parser.add_argument("--small-rounds", type=int, default=3)
    parser.add_argument("--mixes", default="20000x5x1,6667x5x3", help="USERSxCOLLECTIONSxDEVICES, comma-separated")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    args = parser.parse_args()
    report = dict(started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), versions=common.versions(), args=vars(args),
                  redis_db=common.BENCH_DB, loadavg_before=loadavg())
    print(f"load average {' '.join(report['loadavg_before'])}; Redis DB {common.BENCH_DB}", flush=True)
    try:
        if not args.skip_fanout or not args.skip_small:
            if args.skip_fanout:
                args.workers = ""
            fanout(args, report)
        if not args.skip_memory:
            report["memory"] = []
            for mix in args.mixes.split(","):
                users, collections, devices = (int(x) for x in mix.lower().split("x"))
                report["memory"].append(memory_mix(users, collections, devices))
    finally:
        report["loadavg_after"] = loadavg()
        path = common.save_json(f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json", report)
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

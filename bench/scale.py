"""Redis memory per subscription, and fan-out time for 10,000 subscribers of one topic.

    .venv/bin/python bench/scale.py
    .venv/bin/python bench/scale.py --subs 10000 --runs 3 --skip-fanout

Memory: 10,000 subscriptions inserted with Store.upsert (hash per subscription,
topic zset, expiry zset, dedupe hash) versus a baseline of 10,000 bare HSETs of
the same field/value pairs under the same key names. Counted two ways: the sum
of MEMORY USAGE over every key in DB 12 (exact, not disturbed by other users of
the Redis server) and the INFO used_memory delta (server-wide, noisy on a shared
Redis).

Fan-out: the delivery benchmark (bench/delivery.py) with 10,000 subscriptions at
0 ms receiver latency: warm worker, ChangeIngestor.submit -> receiver has all
pushes, against the pywebpush loop baseline on --baseline messages.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def key_bytes(client) -> tuple[int, int]:
    total = keys = 0
    for key in client.scan_iter(count=1000):
        total += client.memory_usage(key, samples=0) or 0
        keys += 1
    return total, keys


def used_memory(client) -> int:
    return int(client.info("memory")["used_memory"])


def memory(args) -> dict:
    import redis

    class FakeReceiver:
        def endpoint(self, name):  # a realistic FCM-like endpoint length
            return f"https://fcm.googleapis.com/fcm/send/{name}:APA91bH{'x' * 120}"

    common.clean_bench_db()
    client = redis.Redis.from_url(common.REDIS_URL)
    services = common.services_for(common.bench_env())
    try:
        before = used_memory(client)
        t0 = time.time()
        _, subscriptions, _ = common.make_subscriptions(services, FakeReceiver(), "calendars/bench/scale", args.subs)
        insert_seconds = time.time() - t0
        ours_keys_bytes, ours_keys = key_bytes(client)
        ours_used = used_memory(client) - before
        fields = [s.to_fields() for s in subscriptions]
        common.clean_bench_db()
        before = used_memory(client)
        pipe = client.pipeline(transaction=False)
        for s, f in zip(subscriptions, fields):
            pipe.hset(f"baseln:{s.id}", mapping=f)  # a key name as long as the store's "dp:sub:"
        pipe.execute()
        base_keys_bytes, base_keys = key_bytes(client)
        base_used = used_memory(client) - before
    finally:
        client.close()
        common.clean_bench_db()
    n = args.subs
    result = dict(
        subscriptions=n, insert_seconds=insert_seconds, insert_rate=n / insert_seconds,
        ours=dict(keys=ours_keys, memory_usage_bytes=ours_keys_bytes, per_sub=ours_keys_bytes / n, used_memory_delta=ours_used,
                  used_memory_per_sub=ours_used / n),
        baseline=dict(keys=base_keys, memory_usage_bytes=base_keys_bytes, per_sub=base_keys_bytes / n,
                      used_memory_delta=base_used, used_memory_per_sub=base_used / n),
    )
    result["ratio_memory_usage"] = result["ours"]["per_sub"] / result["baseline"]["per_sub"]
    result["ratio_used_memory"] = (ours_used / base_used) if base_used > 0 else None
    print(f"memory: ours {result['ours']['per_sub']:.0f} B/subscription (MEMORY USAGE over {ours_keys} keys), "
          f"baseline bare HSET {result['baseline']['per_sub']:.0f} B -> ratio {result['ratio_memory_usage']:.2f}x; "
          f"INFO used_memory delta {ours_used / n:.0f} vs {base_used / n:.0f} B/subscription; "
          f"Store.upsert {result['insert_rate']:.0f}/s (one Lua call each, key generation included)")
    return result


def fanout(args) -> dict:
    import delivery

    bench_args = argparse.Namespace(subs=args.subs, timeout=180.0, worker_pythonpath="", worker_cwd="")
    runs = []
    with delivery.Bench(bench_args, 0, args.concurrency, args.per_origin) as bench:
        for _ in range(args.runs):
            runs.append(bench.baseline(args.baseline))
            time.sleep(0.3)
            runs.append(bench.ours())
            time.sleep(0.3)
    ours, baseline = delivery.summarize(runs, "ours"), delivery.summarize(runs, "baseline")
    seconds = [r["seconds"] for r in runs if r["kind"] == "ours"]
    result = dict(subscriptions=args.subs, concurrency=args.concurrency, per_origin=args.per_origin,
                  baseline_messages=args.baseline, ours=ours, baseline=baseline,
                  ours_median_seconds=common.median(seconds), ratio=ours["median"] / baseline["median"], raw=runs)
    print(f"fan-out {args.subs}: median {result['ours_median_seconds']:.2f} s ({ours['median']:.0f}/s); baseline "
          f"{baseline['median']:.0f}/s -> ratio {result['ratio']:.2f}x")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subs", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=int, default=2000, help="pywebpush loop messages per baseline run")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--per-origin", type=int, default=256)
    parser.add_argument("--skip-fanout", action="store_true")
    args = parser.parse_args()
    report = dict(started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), versions=common.versions(), args=vars(args),
                  loadavg_before=Path("/proc/loadavg").read_text().split()[:3])
    report["memory"] = memory(args)
    if not args.skip_fanout:
        report["fanout"] = fanout(args)
    path = common.save_json(f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json", report)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

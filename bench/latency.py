"""Webhook-accepted -> push-received latency at a steady event rate.

    .venv/bin/python bench/latency.py                    # 50 events/s, 40 s per configuration
    .venv/bin/python bench/latency.py --seconds 20 --rate 50

Set-up: the real web app (`python -m gunicorn wsgi:app`, the repository's
gunicorn.conf.py: 2 gthread workers x 32 threads) and one worker
(`python -m app.cli worker`), Redis DB 12, and the Node receiver
(bench/receiver.js, plain http on 127.0.0.1) recording every push with its
arrival time and body. 20 calendars x 10 subscribers (real P-256 keys).

Load: Nextcloud CalendarObjectUpdatedEvent webhook envelopes (Authorization:
Bearer <WEBHOOK_SECRET>) at a steady rate, each for a randomly chosen calendar
(seeded), with per-calendar increasing sync-tokens, sent on schedule by 8
keep-alive client threads.

Measurement: each push is decrypted with its subscriber's keys afterwards
(outside the timed path) to read the sync-token it carries. An event with
token N on calendar C is delivered to subscriber S by the first push S
receives whose token is >= N (later events are merged into one push; that is
the point of coalescing). Latency = push receipt time (receiver clock) - the
time the client got the webhook's 202 (both wall clock on this machine).
Reported per (event, subscriber) and per event until its last subscriber got it.

Configurations:
  interval-1000  PUSH_MIN_INTERVAL_MS=1000 (default): consecutive deliveries of one
                 calendar are spaced >= 1 s apart and the changes in between are merged
                 into one trailing push; the delayed job needs the RQ scheduler, which
                 polls once per second. This measures freshness under rate limiting.
  interval-0     PUSH_MIN_INTERVAL_MS=0: a job per change unless one is already queued.
                 This measures the pipeline itself (webhook -> Redis -> RQ -> worker ->
                 encrypt -> POST).
  baseline       the benchmark itself POSTs 10 pre-encrypted push bodies per event
                 straight to the receiver at the same rate (keep-alive, same client
                 threads): the irreducible HTTP cost on this machine. Latency = receipt -
                 the moment the benchmark started sending that event's pushes.

Results go to stdout and bench/out/latency-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import queue
import random
import re
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SABRE = "http://sabre.io/ns/sync/"
TOKEN = re.compile(rb"<D:sync-token>http://sabre\.io/ns/sync/(\d+)</D:sync-token>")
ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Nextcloud calendar v5//EN\r\nBEGIN:VEVENT\r\n"
    "UID:{uid}\r\nDTSTAMP:20251009T090000Z\r\nDTSTART:20251010T100000Z\r\n"
    "DTEND:20251010T110000Z\r\nSUMMARY:Standup {n}\r\nEND:VEVENT\r\nEND:VCALENDAR"
)


def envelope(owner: str, uri: str, calendar_id: int, token: int, n: int) -> bytes:
    """A Nextcloud webhook_listeners envelope for CalendarObjectUpdatedEvent (nextcloud-integration.md §4)."""
    uid = f"bench-{calendar_id}-{n}"
    calendar = {
        "id": calendar_id, "uri": uri, "principaluri": f"principals/users/{owner}",
        "{http://calendarserver.org/ns/}getctag": f"{SABRE}{token}",
        "{http://sabredav.org/ns}sync-token": token,
        "{urn:ietf:params:xml:ns:caldav}supported-calendar-component-set": {},
        "{urn:ietf:params:xml:ns:caldav}schedule-calendar-transp": {},
        "{DAV:}displayname": uri.title(), "{urn:ietf:params:xml:ns:caldav}calendar-description": None,
        "{urn:ietf:params:xml:ns:caldav}calendar-timezone": None, "{http://apple.com/ns/ical/}calendar-order": 0,
        "{http://apple.com/ns/ical/}calendar-color": "#0082c9", "{http://nextcloud.com/ns}deleted-at": None,
        "{http://nextcloud.com/ns}owner-displayname": owner.title(),
    }
    payload = {
        "event": {
            "calendarId": calendar_id,
            "calendarData": calendar,
            "shares": [{"href": "principal:principals/users/bob", "commonName": "Bob", "status": 1, "readOnly": False,
                        "{http://owncloud.org/ns}principal": "principals/users/bob",
                        "{http://owncloud.org/ns}group-share": False}],
            "objectData": {
                "id": n, "uri": f"{uid}.ics", "lastmodified": 1760000000 + n, "etag": f'"{n:032x}"',
                "calendarid": calendar_id, "size": 612, "calendardata": ICS.format(uid=uid, n=n), "component": "vevent",
                "classification": 0, "{http://nextcloud.com/ns}deleted-at": None,
            },
            "class": "OCP\\Calendar\\Events\\CalendarObjectUpdatedEvent",
        },
        "user": {"uid": owner, "displayName": owner.title()},
        "time": 1760000000 + n,
    }
    return json.dumps(payload).encode()


class Setup:
    """Receiver + subscriptions (+ web and worker for the davpush configurations)."""

    def __init__(self, args, min_interval_ms: int | None):
        self.args = args
        self.min_interval_ms = min_interval_ms
        self.procs = []

    def __enter__(self):
        common.clean_bench_db()
        self.receiver = common.Receiver(0, record=True)
        self.procs.append(self.receiver)
        try:
            self.port = common.free_port()
            self.env = common.bench_env(
                PORT=self.port, BIND_HOST="127.0.0.1", PUBLIC_URL=f"http://127.0.0.1:{self.port}",
                PUSH_MIN_INTERVAL_MS=self.min_interval_ms if self.min_interval_ms is not None else 1000,
                PUSH_CONCURRENCY=256, PUSH_PER_ORIGIN_CONCURRENCY=256, LOG_LEVEL="info",
            )
            self.services = common.services_for(self.env)
            self.calendars = []  # (owner, uri, calendar_id, topic, [subscriptions])
            self.keys = {}
            for c in range(self.args.collections):
                owner, uri = f"user{c:02d}", "work"
                topic, subs, keys = common.make_subscriptions(
                    self.services, self.receiver, f"calendars/{owner}/{uri}", self.args.subscribers,
                    prefix=f"c{c:02d}-", keep_keys=True,
                )
                self.calendars.append((owner, uri, 100 + c, topic, subs))
                self.keys.update(keys)
            if self.min_interval_ms is not None:
                web = common.Proc([common.PYTHON, "-m", "gunicorn", "wsgi:app"], env=self.env,
                                  log_name=f"web-{self.min_interval_ms}.log")
                self.procs.append(web)
                worker = common.start_worker(self.env, name=f"worker-latency-{self.min_interval_ms}")
                self.procs.append(worker)
                common.wait_for_worker(self.services, worker)
                common.wait_for_web(web, self.port)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as error:
                print(f"cleanup: {error}", file=sys.stderr)
        common.clean_bench_db()


def run_load(setup: Setup, mode: str) -> dict:
    """Send events on schedule; returns the per-event records."""
    args = setup.args
    rng = random.Random(args.seed)
    tokens = [1000] * len(setup.calendars)
    total = int(args.rate * args.seconds)
    plan = []
    for n in range(total):
        c = rng.randrange(len(setup.calendars))
        tokens[c] += 1
        plan.append((n, c, tokens[c]))
    bodies = {}
    if mode == "baseline":
        from app.delivery.encrypt import encrypt
        from app.protocol.message import build_push_message

        # Pre-encrypted outside the timed path: the baseline is the bare HTTP cost.
        for n, c, token in plan:
            owner, uri, cal_id, topic, subs = setup.calendars[c]
            message = build_push_message(topic, content=True, property_update=False, sync_token=f"{SABRE}{token}")
            bodies[n] = [(s.id, encrypt(message, s.public_key, s.auth_secret)) for s in subs]
    work: queue.Queue = queue.Queue()
    records = {}
    lock = threading.Lock()
    start = time.time() + 1.0
    for n, c, token in plan:
        work.put((start + n / args.rate, n, c, token))

    def client():
        port = setup.port if mode != "baseline" else setup.receiver.port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            try:
                due, n, c, token = work.get_nowait()
            except queue.Empty:
                break
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            owner, uri, cal_id, topic, subs = setup.calendars[c]
            sent = time.time()
            if mode == "baseline":
                for sub_id, body in bodies[n]:
                    conn.request("POST", f"/push/{sub_id}", body=body,
                                 headers={"TTL": "86400", "Content-Encoding": "aes128gcm", "Urgency": "normal"})
                    response = conn.getresponse()
                    response.read()
                status, outcome = response.status, "direct"
            else:
                conn.request("POST", "/push/webhooks/nextcloud", body=envelope(owner, uri, cal_id, token, n),
                             headers={"Authorization": f"Bearer {common.WEBHOOK_SECRET}"})
                response = conn.getresponse()
                data = response.read()
                status = response.status
                outcome = ",".join(json.loads(data).get("outcomes", [])) if status == 202 else data[:200].decode()
            acked = time.time()
            with lock:
                records[n] = dict(n=n, c=c, token=token, due=due, sent=sent, acked=acked, status=status, outcome=outcome)
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return dict(records=records, start=start, total=total, final_tokens=tokens)


def wait_delivered(setup: Setup, load: dict, timeout: float) -> None:
    """Until every subscriber has received the final token of its calendar (or the timeout)."""
    changed = [c for c, token in enumerate(load["final_tokens"]) if token > 1000]  # calendars that got events
    expected = sum(len(setup.calendars[c][4]) for c in changed)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if latest_tokens_complete(setup, load, expected):
            return
        time.sleep(0.5)
    print("  warning: not every subscriber got its calendar's final token before the timeout", flush=True)


def latest_tokens_complete(setup, load, expected) -> bool:
    stats = setup.receiver.stats()
    if stats["count"] == 0:
        return False
    if stats["count"] < expected:
        return False
    records = setup.receiver.records()  # decrypted once each (token_of caches)
    best = {}
    for _t, path, body in records:
        best[path] = max(best.get(path, 0), token_of(setup, path, body) or 0)
    for c, (_, _, _, _, subs) in enumerate(setup.calendars):
        if load["final_tokens"][c] <= 1000:
            continue  # no event for this calendar, so no push expected
        for s in subs:
            if best.get(f"/push/{s.id}", 0) < load["final_tokens"][c]:
                return False
    return True


_token_cache = {}


def token_of(setup, path: str, body_b64: str) -> int | None:
    key = (path, body_b64[:40])
    if key in _token_cache:
        return _token_cache[key]
    sub_id = path.rsplit("/", 1)[-1]
    private, auth = setup.keys[sub_id]
    plaintext = common.decrypt(base64.b64decode(body_b64), private, auth)
    match = TOKEN.search(plaintext)
    value = int(match.group(1)) if match else None
    _token_cache[key] = value
    return value


def analyse(setup: Setup, load: dict, mode: str) -> dict:
    records = setup.receiver.records()
    receipts = defaultdict(list)  # sub id -> [(time s, token)]
    for t, path, body in records:
        receipts[path.rsplit("/", 1)[-1]].append((t / 1000, token_of(setup, path, body)))
    for values in receipts.values():
        values.sort()
    per_push, per_event, missing, negative = [], [], 0, 0
    for _n, event in sorted(load["records"].items()):
        if event["status"] not in (200, 201, 202):
            missing += 1
            continue
        reference = event["sent"] if mode == "baseline" else event["acked"]
        subs = setup.calendars[event["c"]][4]
        latest = None
        for s in subs:
            got = next((t for t, token in receipts.get(s.id, ()) if token is not None and token >= event["token"]), None)
            if got is None:
                missing += 1
                continue
            latency = (got - reference) * 1000
            negative += latency < 0
            per_push.append(latency)
            latest = latency if latest is None else max(latest, latency)
        if latest is not None:
            per_event.append(latest)
    events = load["records"].values()
    achieved = len(load["records"]) / (max(e["sent"] for e in events) - min(e["sent"] for e in events))
    ack_ms = [(e["acked"] - e["sent"]) * 1000 for e in events]
    lateness = [(e["sent"] - e["due"]) * 1000 for e in events]
    outcomes = defaultdict(int)
    for e in events:
        for o in str(e["outcome"]).split(","):
            outcomes[o] += 1

    def dist(values):
        return {k: round(common.percentile(values, p), 1) for k, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))} | {
            "mean": round(sum(values) / len(values), 1) if values else None, "n": len(values)}

    return dict(
        mode=mode, events=len(load["records"]), achieved_rate=round(achieved, 2), pushes_received=len(records),
        pushes_per_event=round(len(records) / max(1, len(load["records"])), 2),
        push_latency_ms=dist(per_push), event_all_subscribers_ms=dist(per_event), missing=missing,
        negative_latencies=negative, webhook_answer_ms=dist(ack_ms), client_lateness_ms=dist(lateness),
        outcomes=dict(outcomes),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="webhook events per second")
    parser.add_argument("--seconds", type=float, default=40.0, help="duration of each configuration")
    parser.add_argument("--collections", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=10, help="per collection")
    parser.add_argument("--clients", type=int, default=8, help="client threads sending on schedule")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--modes", default="interval-1000,interval-0,baseline")
    args = parser.parse_args()

    report = dict(started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), versions=common.versions(), args=vars(args),
                  loadavg_before=Path("/proc/loadavg").read_text().split()[:3], results={})
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        interval = None if mode == "baseline" else int(mode.split("-")[1])
        print(f"\n== {mode}: {args.rate:g} events/s for {args.seconds:g} s over {args.collections} calendars x "
              f"{args.subscribers} subscribers", flush=True)
        with Setup(args, interval) as setup:
            load = run_load(setup, mode)
            wait_delivered(setup, load, timeout=15)
            time.sleep(0.5)
            _token_cache.clear()
            result = analyse(setup, load, mode)
        report["results"][mode] = result
        p, e = result["push_latency_ms"], result["event_all_subscribers_ms"]
        print(f"  {result['events']} events at {result['achieved_rate']}/s, {result['pushes_received']} pushes "
              f"({result['pushes_per_event']} per event), missing {result['missing']}, outcomes {result['outcomes']}")
        print(f"  per push:  p50 {p['p50']} ms  p90 {p['p90']} ms  p99 {p['p99']} ms  max {p['max']} ms")
        print(f"  per event (all subscribers): p50 {e['p50']} ms  p99 {e['p99']} ms")
        what = "10 direct POSTs took" if mode == "baseline" else "webhook answered (202) in"
        print(f"  {what} p50 {result['webhook_answer_ms']['p50']} ms p99 {result['webhook_answer_ms']['p99']} ms; "
              f"client lateness p99 {result['client_lateness_ms']['p99']} ms", flush=True)

    base = report["results"].get("baseline")
    if base:
        print("\nratios against the direct-POST baseline (p50 / p99 per push)")
        for mode, r in report["results"].items():
            if mode == "baseline":
                continue
            ratio50 = r["push_latency_ms"]["p50"] / base["push_latency_ms"]["p50"]
            ratio99 = r["push_latency_ms"]["p99"] / base["push_latency_ms"]["p99"]
            r["ratio_vs_baseline"] = dict(p50=round(ratio50, 1), p99=round(ratio99, 1))
            print(f"  {mode}: p50 {ratio50:.1f}x, p99 {ratio99:.1f}x")
    path = common.save_json(f"latency-{time.strftime('%Y%m%d-%H%M%S')}.json", report)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

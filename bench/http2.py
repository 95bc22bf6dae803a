"""HTTP/2 against the service's HTTP/1.1 sender, for one large push service (FCM-like).

    .venv/bin/python bench/http2.py                 # 5,000 pushes, 0 and 50 ms, 3 warm rounds
    .venv/bin/python bench/http2.py --pushes 2000 --latencies 0

One receiver (bench/h2_receiver.js: Node, TLS, ALPN h2 + http/1.1, 100 concurrent streams per
HTTP/2 connection like Google's and Mozilla's front ends) stands in for the push service. Both
clients run in this process, trust the receiver's throw-away CA, send the same encrypted bodies
(app.delivery.encrypt, a fresh encryption per push, as a worker does) with the same headers, and
keep at most 256 requests in flight (the large-service bound of PUSH_ORIGIN_CONCURRENCY):

- "http/1.1": app.delivery.sender.PushSender, as a worker uses it (keep-alive connections);
- "h2": httpx.AsyncClient(http2=True) (h2 + hpack, pure Python), on its own event loop thread.

For each client: one cold round on a new client (connections and TLS handshakes included; the
receiver counts the TCP connections it accepted), then warm rounds on the same client (what a
long-lived worker sees). Rounds of the two clients alternate. Results go to stdout and
bench/out/http2-<timestamp>.json.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import socket
import ssl
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

HOST = "push.test"
IN_FLIGHT = 256
PLAINTEXT = b"<P:push-message xmlns:P='https://bitfire.at/webdav-push'>" + b"x" * 200 + b"</P:push-message>"


class H2Receiver:
    def __init__(self, latency_ms: float, cert: Path, key: Path):
        self.proc = common.Proc(["node", str(common.BENCH / "h2_receiver.js"), "--cert", str(cert), "--key", str(key),
                                 "--latency-ms", str(latency_ms)], log_name=f"h2-receiver-{latency_ms:g}ms.log",
                                stdout_pipe=True)
        self.port = int(self.proc.popen.stdout.readline().split()[1])
        self.control = f"http://127.0.0.1:{int(self.proc.popen.stdout.readline().split()[1])}"

    def _get(self, path: str, timeout: float = 130):
        with urllib.request.urlopen(self.control + path, timeout=timeout) as answer:
            return json.loads(answer.read())

    def reset(self):
        return self._get("/_reset")

    def wait(self, n: int, timeout: float = 120):
        return self._get(f"/_wait?n={n}&timeout_ms={int(timeout * 1000)}", timeout + 10)

    def stop(self):
        self.proc.stop()


def certificate(folder: Path) -> tuple[Path, Path]:
    sys.path.insert(0, str(common.ROOT / "tests"))
    from support.raw_http import self_signed_certificate

    return self_signed_certificate(folder, HOST)


def pushes(port: int, count: int, keys: list) -> list:
    from app.delivery.encrypt import encrypt
    from app.delivery.sender import PushRequest

    headers = {"TTL": "86400", "Urgency": "normal", "Topic": "bench", "Content-Encoding": "aes128gcm",
               "Content-Type": 'application/xml; charset="UTF-8"'}
    return [PushRequest(f"s{i}", f"https://{HOST}:{port}/push/s{i}",
                        lambda k=keys[i % len(keys)]: encrypt(PLAINTEXT, k[1], k[2]), headers) for i in range(count)]  # noqa: B008


class Http11Client:
    name = "http/1.1"

    def __init__(self, ca: Path):
        from app.delivery.sender import PushSender

        def pinned(host, port, type=0):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        context = ssl.create_default_context(cafile=str(ca))
        context.set_alpn_protocols(["http/1.1"])
        self.sender = PushSender(concurrency=IN_FLIGHT, per_origin=IN_FLIGHT, connect_timeout=10, read_timeout=30,
                                 allow_http=False, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),),
                                 resolver=pinned, ssl_context=context)

    def send(self, batch) -> list[str]:
        return [o.kind for o in self.sender.send_all(batch, lambda origin: "vapid t=bench,k=bench")]

    def close(self):
        self.sender.close()


class H2Client:
    name = "h2"

    def __init__(self, ca: Path):
        import httpx

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        context = ssl.create_default_context(cafile=str(ca))

        async def make():
            return httpx.AsyncClient(http2=True, verify=context, timeout=30,
                                     limits=httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT))

        self.client = asyncio.run_coroutine_threadsafe(make(), self.loop).result()

    async def _send(self, batch) -> list[str]:
        queue = list(reversed(batch))
        kinds = []

        async def lane():
            while queue:
                item = queue.pop()
                headers = dict(item.headers, Authorization="vapid t=bench,k=bench")
                # the name resolves to 127.0.0.1 (as the HTTP/1.1 sender's pinned resolver does); TLS checks the name
                answer = await self.client.post(item.endpoint.replace(HOST, "127.0.0.1"), content=item.make_body(),
                                                headers=dict(headers, Host=item.endpoint.split("/")[2]),
                                                extensions={"sni_hostname": HOST})
                kinds.append("success" if 200 <= answer.status_code < 300 else f"status {answer.status_code}")

        await asyncio.gather(*(lane() for _ in range(min(IN_FLIGHT, len(batch)))))
        return kinds

    def send(self, batch) -> list[str]:
        return asyncio.run_coroutine_threadsafe(self._send(batch), self.loop).result()

    def close(self):
        asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)


def measure(client, receiver: H2Receiver, batch) -> dict:
    receiver.reset()
    cpu0, t0 = time.process_time(), time.time()
    kinds = client.send(batch)
    stats = receiver.wait(len(batch))
    seconds = stats["last"] / 1000 - t0
    cpu = time.process_time() - cpu0
    assert kinds.count("success") == len(batch), set(kinds)
    return dict(client=client.name, pushes=len(batch), seconds=seconds, rate=len(batch) / seconds,
                client_cpu_us_per_push=cpu * 1e6 / len(batch), tcp_connections=stats["tcp"],
                h2_sessions=stats["h2_sessions"], h1_requests=stats["h1_requests"], h2_requests=stats["h2_requests"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=5000)
    parser.add_argument("--latencies", default="0,50")
    parser.add_argument("--rounds", type=int, default=3, help="warm rounds per client")
    args = parser.parse_args()

    report = dict(started=time.strftime("%Y-%m-%d %H:%M:%S %Z"), versions=common.versions(), args=vars(args),
                  loadavg_before=Path("/proc/loadavg").read_text().split()[:3], results={})
    common.OUT.mkdir(parents=True, exist_ok=True)
    cert, key = certificate(common.OUT)
    keys = [common.client_keys() for _ in range(500)]
    print(json.dumps({k: report["versions"].get(k) for k in ("python", "httpx", "h2", "openssl (cryptography)")}))
    for latency in [float(x) for x in args.latencies.split(",") if x.strip()]:
        receiver = H2Receiver(latency, cert, key)
        runs = []
        try:
            batch = pushes(receiver.port, args.pushes, keys)
            clients = [Http11Client(cert), H2Client(cert)]
            print(f"\n== {args.pushes} pushes to one origin, {latency:g} ms added latency, {IN_FLIGHT} in flight", flush=True)
            for round_number in range(args.rounds + 1):
                for client in clients if round_number % 2 == 0 else list(reversed(clients)):
                    run = measure(client, receiver, batch)
                    run["cold"] = round_number == 0
                    runs.append(run)
                    print(f"  {client.name:8s} {'cold' if run['cold'] else 'warm'}  {run['rate']:7.0f}/s  client CPU "
                          f"{run['client_cpu_us_per_push']:4.0f} µs/push  TCP connections opened {run['tcp_connections']:3d}"
                          f"  (h2 sessions {run['h2_sessions']}, h1 requests {run['h1_requests']}, h2 requests "
                          f"{run['h2_requests']})", flush=True)
            for client in clients:
                client.close()
        finally:
            receiver.stop()
        summary = {}
        for name in ("http/1.1", "h2"):
            warm = [r for r in runs if r["client"] == name and not r["cold"]]
            cold = [r for r in runs if r["client"] == name and r["cold"]][0]
            summary[name] = dict(warm_median_rate=common.median([r["rate"] for r in warm]),
                                 warm_median_cpu_us=common.median([r["client_cpu_us_per_push"] for r in warm]),
                                 cold_rate=cold["rate"], connections=cold["tcp_connections"])
            print(f"  {name:8s} warm median {summary[name]['warm_median_rate']:7.0f}/s, "
                  f"{summary[name]['warm_median_cpu_us']:.0f} µs CPU/push; cold {cold['rate']:.0f}/s with "
                  f"{cold['tcp_connections']} connections")
        report["results"][f"{latency:g}ms"] = dict(summary=summary, raw=runs,
                                                    loadavg_after=Path("/proc/loadavg").read_text().split()[:3])
    path = common.save_json(f"http2-{time.strftime('%Y%m%d-%H%M%S')}.json", report)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

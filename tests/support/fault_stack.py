"""A whole davpush installation for fault tests: private Redis (AOF) + web + N workers, plus helpers
to write subscriptions directly into Redis and to send webhooks the way Nextcloud does.

    stack = Stack(tmp_path, vapid_key_file, upstream_url=stub.url, workers=1, PUSH_COALESCE_MS=2000)
    stack.start()
    keys = ClientKeys.generate()
    stack.subscribe("calendars/alice/work", [("s1", receiver.endpoint("/s1"))], keys)
    answer = stack.webhook(object_event(owner="alice", uri="work", token=7))
    answer.status, answer.seconds, answer.done_at   # done_at: time.monotonic() when the answer came
    stack.start_worker(); stack.stop()

Everything started is stopped by `stop()` (the fixtures call it), whatever state it is in.
"""
from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import redis as redis_lib
import requests

from .env import SECRET_KEY, WEBHOOK_SECRET
from .procs import ManagedProcess, RedisServer, WebProcess, service_env, start_web, start_worker

DEFAULT_UPSTREAM = "http://127.0.0.1:9"  # nothing listens: upstream is not needed by webhook-only tests


@dataclass
class Answer:
    status: int | None  # None: no answer within the client's timeout (or the connection failed)
    seconds: float
    done_at: float  # time.monotonic() at the answer (or at the give-up)
    sent_at: float
    body: str = ""
    error: str = ""


def topic_of(collection: str) -> str:
    from app.protocol.topics import topic_for_collection

    return topic_for_collection(SECRET_KEY, collection)


class Stack:
    def __init__(self, tmp_path: Path, vapid_key_file: str, *, upstream_url: str = DEFAULT_UPSTREAM,
                 workers: int = 1, web: bool = True, **settings):
        self.tmp_path = Path(tmp_path)
        self.log_dir = self.tmp_path / "logs"
        self.vapid_key_file = vapid_key_file
        self.upstream_url = upstream_url
        self.want_workers = workers
        self.want_web = web
        self.settings = settings
        self.redis = RedisServer(self.tmp_path / "redis")
        self.web: WebProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.started: list[ManagedProcess] = []  # every process ever started, for clean-up
        self._client: redis_lib.Redis | None = None
        self._http = requests.Session()
        self._worker_number = 0

    # ------------------------------------------------------------ processes

    @property
    def env(self) -> dict:
        return service_env(self.redis.url(), self.upstream_url, self.vapid_key_file, **self.settings)

    def start(self) -> Stack:
        self.redis.start()
        if self.want_web:
            self.start_web()
        for _ in range(self.want_workers):
            self.start_worker()
        return self

    def start_web(self) -> WebProcess:
        self.web = start_web(self.env, self.log_dir)
        self.started.append(self.web)
        return self.web

    def start_worker(self, **extra_settings) -> ManagedProcess:
        self._worker_number += 1
        env = dict(self.env, **{k: str(v) for k, v in extra_settings.items()})
        worker = start_worker(env, self.log_dir, self.redis.url(), name=f"worker{self._worker_number}")
        self.workers.append(worker)
        self.started.append(worker)
        return worker

    def spawn_worker(self, **extra_settings) -> ManagedProcess:
        """Start a worker without waiting for it to register (e.g. while Redis is down)."""
        self._worker_number += 1
        env = dict(self.env, **{k: str(v) for k, v in extra_settings.items()})
        from .procs import procfile_command

        worker = ManagedProcess(f"worker{self._worker_number}", procfile_command("worker"), env, self.log_dir).start()
        self.workers.append(worker)
        self.started.append(worker)
        return worker

    def stop(self) -> None:
        for process in reversed(self.started):
            try:
                # gunicorn: SIGINT is its quick shutdown (SIGTERM waits for keep-alive connections)
                process.stop(timeout=10, sig=signal.SIGINT if process is self.web else signal.SIGTERM)
            except Exception:
                pass
        self.redis.stop()
        if self._client is not None:
            self._client.close()
        self._http.close()

    def logs(self, lines: int = 30) -> str:
        return "\n".join(p.tail(lines) for p in self.started)

    # ------------------------------------------------------------ Redis, from the test's side

    @property
    def client(self) -> redis_lib.Redis:
        if self._client is None:
            self._client = self.redis.client()
        return self._client

    def store(self):
        from app.store import Store

        return Store(self.client, self.settings.get("REDIS_PREFIX", "dp:"))

    def subscribe(self, collection: str, endpoints: list[tuple[str, str]], keys, *, user: str = "/u/alice",
                  expires_in: int = 3600) -> str:
        """Write subscriptions (id, push endpoint) of one collection straight into Redis; → topic."""
        from app.protocol.subscription import Subscription
        from app.protocol.triggers import Triggers

        topic = topic_of(collection)
        store = self.store()
        now = int(time.time())
        for sub_id, endpoint in endpoints:
            store.upsert(Subscription(
                id=sub_id, user=user, collection=collection, topic=topic, href=f"/remote.php/dav/{collection}/",
                push_resource=endpoint, public_key=keys.p256dh, auth_secret=keys.auth,
                triggers=Triggers(content_depth="1"), expires=now + expires_in, created=now,
                location=f"https://push.example.test/push/subscriptions/{sub_id}"))
        return topic

    # ------------------------------------------------------------ HTTP

    def webhook(self, payload, timeout: float = 10.0, body: bytes | None = None) -> Answer:
        """POST a webhook envelope to the web process as Nextcloud does."""
        data = body if body is not None else json.dumps(payload).encode()
        return self.request("POST", "/push/webhooks/nextcloud", timeout=timeout, data=data,
                            headers={"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"})

    def request(self, method: str, path: str, timeout: float = 10.0, **kwargs) -> Answer:
        sent = time.monotonic()
        try:
            response = requests.request(method, self.web.url + path, timeout=timeout, **kwargs)
        except requests.RequestException as error:
            done = time.monotonic()
            return Answer(None, done - sent, done, sent, error=type(error).__name__)
        done = time.monotonic()
        return Answer(response.status_code, done - sent, done, sent, response.text[:2000])

"""Redis Sentinel: REDIS_URL=redis+sentinel://…, and a failover that no process is restarted for.

Real processes throughout: a primary and a replica `redis-server`, two `redis-server --sentinel`,
davpush's web app under gunicorn and a `davpush worker`, as the Procfile runs them.
"""
import json
import os
import subprocess
import sys
import time

import pytest
import redis
import requests

from app.core.config import ConfigError, load_settings
from app.core.redis_connect import RedisUrlError, parse_sentinel_url, redis_address
from support import bodies
from support.env import WEBHOOK_SECRET
from support.payloads import object_event
from support.push_receiver import ClientKeys
from support.servers import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE = "davpush-main"


def test_sentinel_urls_parse_and_hide_the_password():
    target = parse_sentinel_url("redis+sentinel://:s%40cret@10.0.0.1:26379,[::1]:26380/mymaster/3")
    assert target.sentinels == (("10.0.0.1", 26379), ("::1", 26380)) and target.service == "mymaster"
    assert target.db == 3 and target.password == "s@cret" and "s@cret" not in repr(target)
    assert parse_sentinel_url("redis+sentinel://h:26379/m").db == 0
    assert redis_address("redis+sentinel://:pw@h1:26379,h2:26379/m/1") == "redis+sentinel://h1:26379,h2:26379/m/1"


@pytest.mark.parametrize("url, words", [
    ("redis+sentinel://h1:26379", "/<service>[/<db>]"),
    ("redis+sentinel://h1/m", "is not host:port"),
    ("redis+sentinel://h1:26379/m/x", "is not a number"),
])
def test_bad_sentinel_urls_are_refused_at_start_up(make_env, url, words):
    with pytest.raises(RedisUrlError, match=words.replace("[", r"\[").replace("]", r"\]")):
        parse_sentinel_url(url)
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_settings(make_env(REDIS_URL=url))


def _wait(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, requests.RequestException):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class RedisSet:
    """A primary, a replica and two Sentinels on free ports in `directory`."""

    def __init__(self, directory):
        self.directory = directory
        self.processes = []
        self.primary, self.replica = free_port(), free_port()
        self.sentinels = [free_port(), free_port()]

    def _server(self, *args):
        self.processes.append(subprocess.Popen(["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def start(self):
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._server("--port", str(self.primary), *common, "--dir", str(self.directory))
        self._server("--port", str(self.replica), *common, "--dir", str(self.directory),
                     "--replicaof", "127.0.0.1", str(self.primary))
        for port in self.sentinels:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(f"port {port}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {self.primary} 1\n"
                              f"sentinel down-after-milliseconds {SERVICE} 2000\nsentinel failover-timeout {SERVICE} 10000\n")
            self._server(str(config), "--sentinel")
        sentinel = redis.Redis(port=self.sentinels[0])
        _wait(lambda: redis.Redis(port=self.replica).info("replication")["master_link_status"] == "up", 20, "replication")
        _wait(lambda: len(sentinel.sentinel_slaves(SERVICE)) == 1, 20, "the sentinel to see the replica")
        return self

    def url(self, dead_port: int) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in [dead_port, *self.sentinels])  # an unreachable Sentinel first
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def master_port(self) -> int:
        return int(redis.Redis(port=self.sentinels[0]).sentinel_get_master_addr_by_name(SERVICE)[1])

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=10)


@pytest.fixture
def redis_set(tmp_path):
    servers = RedisSet(tmp_path).start()
    yield servers
    servers.stop()


def _start(args, env, log):
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _register(base, receiver, name):
    keys = ClientKeys.generate()
    response = requests.post(f"{base}/remote.php/dav/calendars/alice/work/", timeout=10,
                             data=bodies.davx5_old(receiver.endpoint(f"/up/{name}"), keys.p256dh, keys.auth),
                             auth=("alice", "alice-pw"), headers={"Content-Type": bodies.XML_UTF8})
    return response.status_code


def _webhook(base, token):
    return requests.post(f"{base}/push/webhooks/nextcloud", data=json.dumps(object_event(token=token)), timeout=10,
                         headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"}).status_code


def test_a_sentinel_failover_needs_no_restart_and_keeps_the_subscriptions(redis_set, nextcloud, receiver, make_env, tmp_path):
    port = free_port()
    env = dict(os.environ, **make_env(nextcloud.url, REDIS_URL=redis_set.url(free_port()), PUSH_MIN_INTERVAL_MS=0),
               PORT=str(port), BIND_HOST="127.0.0.1", WEB_CONCURRENCY="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    log = open(tmp_path / "processes.log", "w")
    web = _start([sys.executable, "-m", "gunicorn", "wsgi:app"], env, log)
    worker = _start([sys.executable, "-m", "app.cli", "worker"], env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: requests.get(f"{base}/push/livez", timeout=2).ok, 30, "the web process")
        assert _register(base, receiver, "before") == 201
        assert _webhook(base, 101) == 202
        _wait(lambda: receiver.pushes_to("/up/before"), 30, "the first push")
        old_primary = redis_set.primary
        redis.Redis(port=old_primary).wait(1, 5000)  # replicated before the failover is forced

        redis.Redis(port=redis_set.sentinels[0]).execute_command("SENTINEL", "FAILOVER", SERVICE)
        failed_over = time.monotonic()
        _wait(lambda: redis_set.master_port() == redis_set.replica, 30, "the failover")
        # Until the Sentinels turn the old primary into a replica it still takes writes, which the
        # new primary never sees (Redis replication is asynchronous): the change-over window.
        _wait(lambda: redis.Redis(port=old_primary).info("replication")["role"] == "slave", 30, "the old primary to follow")

        # every 2xx answer means the change was stored: keep sending until one is
        _wait(lambda: _webhook(base, 102) == 202, 30, "a webhook accepted after the failover")
        _wait(lambda: len(receiver.pushes_to("/up/before")) == 2, 30, "a push after the failover")
        _wait(lambda: _register(base, receiver, "after") == 201, 30, "a registration after the failover")
        assert time.monotonic() - failed_over < 30
        assert web.poll() is None and worker.poll() is None  # nothing was restarted
        promoted = redis.Redis(port=redis_set.replica)
        assert promoted.info("replication")["role"] == "master"
        assert promoted.zcard("dp:expiry") == 2  # the subscription made before the failover is still there
        assert redis_set.master_port() != old_primary
    finally:
        for process in (web, worker):
            process.terminate()
        for process in (web, worker):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()
    print((tmp_path / "processes.log").read_text()[-3000:])

"""Misbehaving HTTP endpoints for fault tests: a push service that can be slow, DOWN, a TARPIT or a DRIP.

`FaultServer` is a small raw-socket HTTP/1.1 server (one thread per connection, keep-alive) whose
behaviour can be switched while it runs:

  "ok"      answer 201 (after `latency` seconds) — a healthy push service
  "503"     answer 503 (with `Retry-After` when `retry_after` is set) — down behind a load balancer
  "refuse"  nothing listens on the port (connection refused); open connections are cut
  "reset"   accept and close at once, before answering
  "tarpit"  read the request and never answer (until the server stops)
  "drip"    answer one byte every `drip_interval` seconds, never finishing in time

Every request (whatever the answer) is an `Attempt`; `deliveries()` are the attempts answered
2xx — the pushes a phone would have got. A push subscription is told apart by its path, so
`copies()` counts deliveries per path. Works with hosts other than 127.0.0.1 (127.0.0.2, …) to
stand for different push-service origins. The same server in "tarpit" mode is a hung upstream.
"""
from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass

from .push_receiver import Push

MODES = ("ok", "503", "refuse", "reset", "tarpit", "drip")
_MAX_HEAD = 64 * 1024
_MAX_BODY = 1 << 20


@dataclass
class Attempt:
    """One request seen by the server."""

    path: str
    method: str
    headers: list[tuple[str, str]]
    body: bytes
    at: float  # time.monotonic() when the request was complete
    mode: str  # the mode that handled it
    status: int | None = None  # answer sent (None: none, or not completely)
    answered_at: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def push(self) -> Push:
        """As a `push_receiver.Push` (for `decrypt`)."""
        return Push(self.path, self.headers, self.body, self.at)


class FaultServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, mode: str = "ok", latency: float = 0.0,
                 retry_after: str | None = None, drip_interval: float = 2.0, name: str = ""):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.host = host
        self.port = port
        self.name = name or f"{host}:{port}"
        self.latency = latency
        self.retry_after = retry_after
        self.drip_interval = drip_interval
        self._mode = mode
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.attempts: list[Attempt] = []
        self.connections = 0  # accepted TCP connections
        self.open_requests = 0  # requests read and not yet answered (or given up)
        self.peak_open_requests = 0
        self.mode_log: list[tuple[float, str]] = [(time.monotonic(), mode)]
        self._gate = threading.Event()  # "ok" answers wait while it is clear (see hold_from)
        self._gate.set()
        self._hold_from: int | None = None

    # ------------------------------------------------------------ life cycle

    def start(self) -> FaultServer:
        if self._mode != "refuse":
            self._listen()
        elif not self.port:
            raise ValueError("a server that starts refusing needs a fixed port")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._close_listener()
        self._cut_connections()
        with self._cond:
            self._cond.notify_all()
        for thread in list(self._threads):
            thread.join(timeout=2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def endpoint(self, path: str) -> str:
        return self.url + path

    @property
    def origin(self) -> str:
        return self.url

    # ------------------------------------------------------------ switching

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch behaviour. Leaving or entering "refuse" closes or re-opens the port; entering
        "refuse" also cuts open connections (a reused keep-alive connection must not bypass it)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        with self._cond:
            old, self._mode = self._mode, mode
            self.mode_log.append((time.monotonic(), mode))
            self._cond.notify_all()
        if mode == "refuse" and old != "refuse":
            self._close_listener()
            self._cut_connections()
        elif old == "refuse" and mode != "refuse":
            self._listen()

    def hold_from(self, count: int) -> None:
        """From the `count`-th request on, hold "ok" answers (the requests are read and recorded)
        until `release()`: freezes a fan-out at a known point."""
        with self._cond:
            self._hold_from = count
            if len(self.attempts) >= count:
                self._gate.clear()

    def release(self) -> None:
        with self._cond:
            self._hold_from = None
            self._gate.set()
            self._cond.notify_all()

    @property
    def holding(self) -> bool:
        return not self._gate.is_set()

    # ------------------------------------------------------------ inspection

    def snapshot(self) -> list[Attempt]:
        with self._cond:
            return list(self.attempts)

    def deliveries(self, path: str | None = None) -> list[Attempt]:
        return [a for a in self.snapshot() if a.delivered and (path is None or a.path == path)]

    def copies(self) -> Counter:
        """Deliveries (2xx answers) per path."""
        return Counter(a.path for a in self.deliveries())

    def peak_concurrency(self, grace: float = 0.1) -> int:
        """Most requests open at once (read, not yet answered or closed), from the recorded times.

        Each request counts until `grace` seconds before the server noticed its end, so the time it
        takes to notice a close cannot make a request that replaced it look concurrent; requests that
        really overlap (a straggler kept open for seconds) still count.
        """
        now = time.monotonic()
        events = []
        for a in self.snapshot():
            if not a.method:
                continue
            end = a.answered_at if a.answered_at is not None else now
            if end - grace > a.at:
                events += [(a.at, 1), (end - grace, -1)]
        peak = current = 0
        for _, step in sorted(events, key=lambda e: (e[0], e[1])):
            current += step
            peak = max(peak, current)
        return peak

    def attempts_per_path(self) -> Counter:
        return Counter(a.path for a in self.snapshot())

    def wait_until(self, predicate, timeout: float, interval: float = 0.05) -> bool:
        """Wait until predicate(self) is true; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(interval, remaining))
        return True

    # ------------------------------------------------------------ internals

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(1024)
        sock.settimeout(0.2)
        self.port = sock.getsockname()[1]
        if self.name.endswith(":0"):
            self.name = f"{self.host}:{self.port}"
        self._listener = sock
        thread = threading.Thread(target=self._accept_loop, args=(sock,), daemon=True, name=f"fault-accept-{self.port}")
        self._accept_thread = thread
        self._threads.append(thread)
        thread.start()

    def _close_listener(self) -> None:
        sock, self._listener = self._listener, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
        thread = self._accept_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _cut_connections(self) -> None:
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set() and self._listener is listener:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._mode == "reset":
                with self._cond:
                    self.connections += 1
                    self.attempts.append(Attempt("", "", [], b"", time.monotonic(), "reset"))
                    self._cond.notify_all()
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                self.connections += 1
                self._conns.add(conn)
                self._cond.notify_all()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True, name=f"fault-conn-{self.port}")
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray()
        try:
            conn.settimeout(1.0)
            while not self._stop.is_set():
                request = self._read_request(conn, buffer)
                if request is None:
                    return
                if not self._answer(conn, request):
                    return
        except OSError:
            return
        finally:
            with self._cond:
                self._conns.discard(conn)
                self._cond.notify_all()
            try:
                conn.close()
            except OSError:
                pass

    def _recv(self, conn: socket.socket, buffer: bytearray) -> bool:
        """Read more bytes into buffer; False at EOF or stop."""
        while not self._stop.is_set():
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return False
            buffer += data
            return True
        return False

    def _read_request(self, conn: socket.socket, buffer: bytearray) -> Attempt | None:
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > _MAX_HEAD or not self._recv(conn, buffer):
                return None
        end = buffer.index(b"\r\n\r\n")
        head = bytes(buffer[:end]).decode("latin-1")
        del buffer[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) < 3:
            return None
        headers = []
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return None
        if length > _MAX_BODY:
            return None
        while len(buffer) < length:
            if not self._recv(conn, buffer):
                return None
        body = bytes(buffer[:length])
        del buffer[:length]
        attempt = Attempt(parts[1], parts[0], headers, body, time.monotonic(), self._mode)
        with self._cond:
            self.attempts.append(attempt)
            if self._hold_from is not None and len(self.attempts) >= self._hold_from:
                self._gate.clear()
            self.open_requests += 1
            self.peak_open_requests = max(self.peak_open_requests, self.open_requests)
            self._cond.notify_all()
        return attempt

    def _finish(self, attempt: Attempt, status: int | None) -> None:
        with self._cond:
            self.open_requests -= 1
            attempt.status = status
            attempt.answered_at = time.monotonic()
            self._cond.notify_all()

    def _answer(self, conn: socket.socket, attempt: Attempt) -> bool:
        """Answer per mode; False when the connection must end."""
        mode = attempt.mode
        if mode == "tarpit":  # hold the request until the server stops or the client goes away
            conn.settimeout(0.2)
            while not self._stop.is_set() and self._mode == "tarpit":
                try:
                    if not conn.recv(65536):  # wakes up at once when the client closes or resets
                        break
                except TimeoutError:
                    continue
                except OSError:
                    break
            self._finish(attempt, None)
            return False
        if mode == "drip":
            answer = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
            sent = 0
            try:
                while sent < len(answer) - 1 and not self._stop.is_set():
                    conn.sendall(answer[sent:sent + 1])
                    sent += 1
                    if self._stop.wait(self.drip_interval):
                        break
            except OSError:
                pass
            self._finish(attempt, None)
            return False
        if mode in ("refuse", "reset"):  # switched while this request was being read
            self._finish(attempt, None)
            return False
        if mode == "503":
            extra = f"Retry-After: {self.retry_after}\r\n" if self.retry_after else ""
            answer = f"HTTP/1.1 503 Service Unavailable\r\n{extra}Content-Length: 0\r\n\r\n".encode()
            status = 503
        else:
            held = not self._gate.is_set()
            while not self._gate.wait(0.5):
                if self._stop.is_set() or _peer_closed(conn):
                    self._finish(attempt, None)
                    return False
            if held and _peer_closed(conn):  # the client gave up (or died) while it was held
                self._finish(attempt, None)
                return False
            if self.latency:
                time.sleep(self.latency)
            number = len(self.attempts)
            answer = (f"HTTP/1.1 201 Created\r\nLocation: {self.url}/messages/{number}\r\n"
                      "Content-Length: 0\r\n\r\n").encode()
            status = 201
        self._finish(attempt, status)  # before sending: a client that has the answer finds it recorded
        try:
            conn.sendall(answer)
        except OSError:
            with self._cond:
                attempt.status = None
            return False
        return True


def _peer_closed(conn: socket.socket) -> bool:
    try:
        conn.setblocking(False)
        try:
            data = conn.recv(1, socket.MSG_PEEK)
        finally:
            conn.setblocking(True)
            conn.settimeout(1.0)
        return data == b""
    except BlockingIOError:
        return False
    except OSError:
        return True

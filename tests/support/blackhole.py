"""A loopback address and port where connection attempts hang, like a route that drops packets.

A listener whose accept queue is full makes the kernel drop further SYNs, so connect() neither
succeeds nor fails until its timeout: a broken route, entirely on this machine.

    with Blackhole("127.0.0.2", port):
        ... connecting to 127.0.0.2:port hangs ...
"""
from __future__ import annotations

import socket


class Blackhole:
    def __init__(self, host: str, port: int = 0):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((host, port))
        self._listener.listen(0)
        self.host, self.port = self._listener.getsockname()[:2]
        self._fillers = []
        for _ in range(3):  # never accepted: they fill the queue
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.setblocking(False)
            try:
                filler.connect((self.host, self.port))
            except BlockingIOError:
                pass
            self._fillers.append(filler)

    def close(self) -> None:
        for sock in (*self._fillers, self._listener):
            sock.close()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

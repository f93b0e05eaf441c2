"""Real network faults for the client tests (no tests here): a TCP proxy that cuts a connection mid-stream, and a
listener that accepts connections and never answers."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def _cut(sock: socket.socket) -> None:
    """End the connection here (FIN): the peer reads every byte sent so far, then the end mid-message.

    ``shutdown`` also wakes the other pump thread blocked in ``recv`` on this socket (a bare ``close`` would not:
    Linux keeps a socket open while a call on it is in progress)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class CuttingProxy:
    """Forwards TCP to ``127.0.0.1:target_port``; the first ``cuts`` connections that carry more than
    ``cut_after_bytes`` from the server are cut (both sides) after exactly that many bytes, in the middle of
    whatever message they were carrying. Later connections pass intact. New connections go to whatever
    ``target_port`` is then (a load balancer switching replicas)."""

    def __init__(self, target_port: int, cut_after_bytes: int | None = None, cuts: int = 1) -> None:
        self.target_port = target_port
        self.cut_after_bytes = cut_after_bytes
        self.cuts_left = cuts
        self.cuts_done = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._server = _listener()
        self.port = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()  # the target is down: the client sees its connection closed
                continue
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _may_cut(self) -> bool:
        with self._lock:
            if self.cuts_left <= 0:
                return False
            self.cuts_left -= 1
            self.cuts_done += 1
            return True

    def _pump(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        sent = 0
        watching = downstream and self.cut_after_bytes is not None
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if watching and sent + len(data) > (limit := self.cut_after_bytes or 0):
                    watching = False
                    if self._may_cut():
                        sink.sendall(data[: limit - sent])
                        _cut(sink)
                        _cut(source)
                        return
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never sends a byte (a hung server)."""
    server = _listener()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        for sock in accepted:
            sock.close()

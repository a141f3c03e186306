"""A TCP relay for tests: a port that forwards each connection to another address, in threads of its own. It stands
for a network path the test controls: a database that comes up late, a host reached from the containers."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextmanager
def tcp_relay(target: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0)) -> Iterator[int]:
    """Listens on `listen` from now on (port 0: a free one) and yields its port; each connection is forwarded to
    `target`. On the way out it stops listening and cuts the connections it holds."""
    held: list[socket.socket] = []

    class Forward(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with socket.create_connection(target) as upstream:
                held.extend((self.request, upstream))
                back = threading.Thread(target=_pump, args=(upstream, self.request), daemon=True)
                back.start()
                _pump(self.request, upstream)
                back.join()

    with _Server(listen, Forward) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            for sock in held:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

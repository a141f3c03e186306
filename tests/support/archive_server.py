"""A web server holding one model archive (FOUNDRY_MODEL_URL's other end), served as a test needs it: whole, held
part-way until the test releases it, or refused with an HTTP status. It counts the requests it gets."""

from __future__ import annotations

import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def model_archive(folder: Path, name: str) -> bytes:
    """A .tar.gz of `folder` as one top folder `name`, as `tar -czf NAME.tar.gz NAME` makes it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname=name)
    return buffer.getvalue()


class ArchiveServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, body: bytes, hold_at: int | None, status: int) -> None:
        super().__init__((host, 0), Handler)
        self.body, self.hold_at, self.status = body, hold_at, status
        self.requests = 0
        self.sent = 0  # bytes of the body sent, over all requests
        self.released = threading.Event()
        self.closing = threading.Event()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/{path}"

    def release(self) -> None:
        """Send the rest of every held body, and every later one whole."""
        self.released.set()


class Handler(BaseHTTPRequestHandler):
    server: ArchiveServer

    def do_GET(self) -> None:  # the http.server name
        server = self.server
        server.requests += 1
        if server.status != 200:
            self.send_error(server.status)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(server.body)))
        self.end_headers()
        held = server.hold_at if server.hold_at is not None and not server.released.is_set() else len(server.body)
        try:
            self.send(server.body[:held])
            # Held: the client has part of the body and waits, as on a stalled or very slow server.
            while held < len(server.body) and not server.released.wait(0.1):
                if server.closing.is_set():
                    return
            self.send(server.body[held:])
        except (BrokenPipeError, ConnectionResetError):
            return  # the client went away (a test stopped the service mid-download)

    def send(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self.server.sent += len(data)

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet: the tests read `requests`


@contextmanager
def serve_archive(
    body: bytes, hold_at: int | None = None, status: int = 200, host: str = "127.0.0.1"
) -> Iterator[ArchiveServer]:
    """The server on a free port of `host` (0.0.0.0: reachable from containers through the Docker bridge)."""
    server = ArchiveServer(host, body, hold_at, status)
    thread = threading.Thread(target=server.serve_forever, name="archive-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closing.set()
        server.shutdown()
        server.server_close()

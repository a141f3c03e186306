"""The runtime dying mid-stream, which the real in-process runtime cannot be made to do on demand:
a stand-in HTTP server breaks the stream after one event, and the real gateway app is driven over HTTP."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from starlette.testclient import TestClient

from foundry_embedded.gateway import create_app
from foundry_embedded.metrics import Metrics
from foundry_embedded.runtime import ServedModel, Status
from foundry_embedded.settings import Settings

pytestmark = pytest.mark.integration

MODEL = ServedModel(id="tiny-generic-cpu:1", alias="tiny", api_base="/v1", context_length=4096)
FIRST_EVENT = b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'


class BreaksMidStream(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            + f"{len(FIRST_EVENT):x}\r\n".encode()
            + FIRST_EVENT
            + b"\r\n"
        )
        # Then the connection drops in the middle of the chunked body, as when the runtime dies.


@dataclass
class StandInRuntime:
    base_url: str
    status: Status = field(default_factory=lambda: Status("ready", "Serving.", model=MODEL.id, models=(MODEL,)))

    def stop(self) -> None:
        pass


@pytest.fixture
def gateway_app() -> Iterator[TestClient]:
    with socketserver.TCPServer(("127.0.0.1", 0), BreaksMidStream) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        runtime = StandInRuntime(base_url=f"http://127.0.0.1:{server.server_address[1]}")
        with TestClient(create_app(Settings(), runtime, Metrics())) as client:
            yield client
        server.shutdown()


def test_a_stream_broken_by_the_runtime_ends_with_an_error_event(gateway_app: TestClient) -> None:
    body = {"model": MODEL.id, "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with gateway_app.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[0][6:])["choices"][0]["delta"]["content"] == "Hel"  # the partial answer is kept
    error = json.loads(events[-1][6:])["error"]
    assert error["code"] == "stream_failed"
    assert "stopped answering" in error["message"]
    metrics = gateway_app.get("/metrics").text
    assert 'foundry_local_gateway_errors_total{error_type="stream_failed"' in metrics


def test_a_runtime_that_is_gone_is_a_502() -> None:
    runtime = StandInRuntime(base_url="http://127.0.0.1:9")  # discard port: nothing listens
    with TestClient(create_app(Settings(), runtime, Metrics())) as client:
        response = client.post("/v1/chat/completions", json={"model": MODEL.id, "messages": []})
    assert response.status_code == 502
    assert "Check /healthz" in response.json()["error"]["message"]

"""Headers across the router: the client's reach the upstream and the upstream's come back, but for the
connection's own, the keys, and ours."""

from __future__ import annotations

import pytest

from foundry_common.protocol import TOOLS_IGNORED_HEADER
from foundry_router.headers import header_text, to_client, to_upstream

pytestmark = pytest.mark.unit


def test_client_headers_reach_the_upstream_with_its_key_instead_of_the_clients() -> None:
    client = [
        ("openai-organization", "org-1"), ("user-agent", "OpenAI/Python 2.0"), ("x-stainless-lang", "python"),
        ("authorization", "Bearer router-key"), ("host", "router:4000"), ("content-length", "99"),
        ("connection", "keep-alive"), ("x-foundry-route", "local"), ("accept-encoding", "gzip"), ("cookie", "a=b"),
    ]  # fmt: skip
    sent = to_upstream(client, "upstream-key", "req-1")
    assert sent == {
        "openai-organization": "org-1",
        "user-agent": "OpenAI/Python 2.0",
        "x-stainless-lang": "python",
        "authorization": "Bearer upstream-key",
        "content-type": "application/json",
        "x-request-id": "req-1",
    }


def test_upstream_headers_come_back_and_ours_win() -> None:
    upstream = {
        "openai-processing-ms": "12", "x-ratelimit-remaining-requests": "99", "content-type": "text/event-stream",
        "content-length": "10", "content-encoding": "gzip", "transfer-encoding": "chunked", "server": "uvicorn",
        "x-request-id": "theirs", "x-foundry-upstream": "spoofed",
    }  # fmt: skip
    back = to_client(upstream, {"x-foundry-upstream": "host:1", "x-request-id": "ours"})
    assert back == {
        "openai-processing-ms": "12",
        "x-ratelimit-remaining-requests": "99",
        "content-type": "text/event-stream",
        "x-foundry-upstream": "host:1",
        "x-request-id": "ours",
    }


def test_an_upstream_header_about_the_request_itself_comes_back() -> None:
    # The gateway served the request without its tools: the client must learn it, through the router too.
    upstream = {TOOLS_IGNORED_HEADER: "the model publishes no tool markers", "x-foundry-upstream": "spoofed"}
    back = to_client(upstream, {"x-foundry-upstream": "host:1"})
    assert back == {TOOLS_IGNORED_HEADER: "the model publishes no tool markers", "x-foundry-upstream": "host:1"}


def test_a_header_both_send_goes_out_once_as_ours() -> None:
    back = to_client({"Cache-Control": "no-store", "Content-Type": "text/event-stream"}, {"cache-control": "no-cache"})
    assert back == {"cache-control": "no-cache", "content-type": "text/event-stream"}


def test_header_text_is_one_printable_ascii_line() -> None:
    assert header_text("caf\u00e9 down\nagain") == "caf? down again"
    assert len(header_text("x" * 5000)) == 1000

"""Which headers cross the router, each way.

The router is a proxy, not a new API: a client's headers (OpenAI-Organization, user agents, idempotency
keys…) reach the upstream and the upstream's come back, except those that belong to one connection (RFC 9110
hop-by-hop), those the router sets itself (length, encoding after decompression, the upstream's key), and
the router's own request header. Of the upstream's X-Foundry-* headers, only those about the client's own request
(foundry_common.protocol.PASSED_ON_HEADERS) come back: the rest describe the upstream's view, and the router's win.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from foundry_common.protocol import FOUNDRY_HEADER_PREFIX, PASSED_ON_HEADERS, ROUTE_HEADER

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
     "upgrade"}
)  # fmt: skip
NOT_FORWARDED = HOP_BY_HOP | {"host", "content-length", "authorization", "accept-encoding", "cookie", ROUTE_HEADER}
NOT_RETURNED = HOP_BY_HOP | {"content-length", "content-encoding", "date", "server"}
PREFIX = FOUNDRY_HEADER_PREFIX


def to_upstream(client: Iterable[tuple[str, str]], api_key: str, request_id: str) -> dict[str, str]:
    headers = {name: value for name, value in client if name.lower() not in NOT_FORWARDED}
    headers.update(
        {"authorization": f"Bearer {api_key}", "content-type": "application/json", "x-request-id": request_id}
    )
    return headers


def to_client(upstream: Mapping[str, str] | Iterable[tuple[str, str]], ours: Mapping[str, str]) -> dict[str, str]:
    """The upstream's headers that may go back, then ours (where it ran, the request id), which win."""
    items = upstream.items() if isinstance(upstream, Mapping) else upstream
    # Keyed by lower-case name: HTTP names are case-insensitive, and ours must replace theirs, not go out twice.
    headers = {
        name.lower(): value
        for name, value in items
        if name.lower() not in NOT_RETURNED
        and (not name.lower().startswith(PREFIX) or name.lower() in PASSED_ON_HEADERS)
        and name.lower() != "x-request-id"
    }
    headers.update({name.lower(): value for name, value in ours.items()})
    return headers


def header_text(text: str, limit: int = 1000) -> str:
    """A header value from prose: one line of printable ASCII (HTTP headers are Latin-1 at best)."""
    cleaned = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text.replace("\n", " "))
    return cleaned[:limit]

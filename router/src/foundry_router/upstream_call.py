"""The call to one upstream: the request sent, an error answer read, a stream's first event read. Transport errors
come out as UpstreamFailure (failures.py); the caller closes the response it is given on every path."""

from __future__ import annotations

import json

import aiohttp

from foundry_common.relay import first_event
from foundry_router.exchange import Exchange
from foundry_router.failures import UpstreamFailure, transport_failure
from foundry_router.headers import to_upstream
from foundry_router.routing import Target
from foundry_router.service import Router

STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


async def send(router: Router, exchange: Exchange, target: Target) -> aiohttp.ClientResponse:
    payload = exchange.payload if target.model == exchange.model else {**exchange.payload, "model": target.model}
    headers = to_upstream(exchange.client_headers, target.upstream.api_key, exchange.request_id)
    assert router.session is not None
    url, body = f"{target.upstream.base_url}{exchange.operation.path}", json.dumps(payload).encode()
    try:
        try:
            return await router.session.post(url, data=body, headers=headers)
        except STALE_CONNECTION as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                raise  # refused or unreachable: no connection was ever made
            # A kept-alive connection the upstream closed as we reused it: nothing was answered, so one more
            # try on a fresh connection is safe. A stopped upstream refuses that one outright.
            return await router.session.post(url, data=body, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_failure(exc, router.settings.request_timeout_seconds) from exc


async def read_body(response: aiohttp.ClientResponse) -> bytes:
    """The whole answer; the response is released whatever happens."""
    try:
        return await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_failure(exc, 0) from exc
    finally:
        response.release()


async def read_first_event(response: aiohttp.ClientResponse) -> bytes:
    """A stream's bytes up to its first event with text (foundry_common.relay.first_event)."""
    try:
        head = await first_event(response.content.iter_any())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_failure(exc, 0) from exc
    if not head:
        raise UpstreamFailure("ended the stream before its first event", "stream_error", True)
    return head

"""A chat request's JSON body read from a Starlette request within a size limit: the OpenAI-shaped RequestError
(415, 413, 400) for a body that is not JSON, too large, or cut off."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from foundry_common.chat_request import RequestError, check_content_type, parse_body


async def read_payload(request: Request, limit: int) -> dict:
    """The body as a JSON object, checked as `parse_body` checks it."""
    check_content_type(request.headers.get("content-type"))
    return parse_body(await read_body(request, limit))


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"Request body is {declared} bytes; the limit is {limit} bytes.", "body_too_large")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise RequestError(413, f"Request body exceeds the limit of {limit} bytes.", "body_too_large")
    except ClientDisconnect:
        raise RequestError(400, "The client went away while sending the request.", "client_disconnected") from None
    return bytes(body)

"""The router's refusals, in OpenAI's error shape: requests no upstream answered (the shape itself, unknown routes
and wrong methods are foundry_common's: protocol.error_body, server.not_routed)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response

from foundry_common.chat_request import RequestError
from foundry_common.server import error_response as common_error_response

if TYPE_CHECKING:
    from foundry_router.exchange import Exchange


class ClientError(RequestError):
    """An answer for the client, with extra headers (e.g. Retry-After)."""

    def __init__(self, status: int, message: str, code: str, error_type: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(status, message, code, error_type)
        self.headers = headers or {}


def error_response(error: RequestError) -> Response:
    return common_error_response(error, getattr(error, "headers", None))


def no_answer(exchange: Exchange) -> ClientError:
    """The refusal once every candidate failed: a 404 when each said it does not serve the route, else a 502."""
    operation = exchange.operation
    if exchange.unserved and not exchange.failed:
        asked = "; ".join(exchange.unserved)
        message = f"No upstream serves {operation.route} for model '{exchange.model[:200]}': asked {asked}."
        return ClientError(404, f"{message} {operation.advice}".strip(), "route_not_served")
    detail = "; ".join([*exchange.failed, *exchange.unserved])
    advice = " ".join(dict.fromkeys(exchange.advice))
    return ClientError(502, f"No upstream could answer: {detail}. {advice}".strip(), "upstreams_failed", "server_error")

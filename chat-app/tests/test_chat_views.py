"""What the chat decides and says, without Chainlit or a network: the model, the footer, the notices, and the
words for each way a request to the router can fail."""

from __future__ import annotations

import re

import httpx2
import openai
import pytest

from foundry_chat.chat import Answer, Where, classify
from foundry_chat.completion_chunks import StreamError
from foundry_chat.router_watch import RouterStatus, status_from
from foundry_chat.views import (
    NO_MODEL,
    banner_text,
    decide_model,
    default_model,
    footer,
    no_model_text,
    not_ready_message,
    panel_model,
)

pytestmark = pytest.mark.unit

ROUTER = "http://router:4000/v1"
READY = RouterStatus(reachable=True, ready=True, models=("phi-4-mini", "qwen-0.5b"))
UP = {"name": "foundry-local:5273", "url": "http://foundry-local:5273/v1", "cloud": False, "state": "up"}
DOWN = {
    "name": "host.docker.internal:51211",
    "url": "http://host.docker.internal:51211/v1",
    "cloud": False,
    "state": "down",
    "error": "connection failed: connection refused",
}
DOWNLOADING = {
    **UP,
    "state": "down",
    "service_state": "downloading",
    "service_message": "Downloading phi-4-mini: 42%.",
    "download_percent": 42.0,
}
NOT_READY = RouterStatus(
    reachable=True,
    upstreams=(DOWN, UP | {"state": "down"}),
    message="No upstream serves a model yet: start Foundry Local or check FOUNDRY_LOCAL_URLS.",
)
NO_ROUTER = RouterStatus(
    message=(
        "the router at http://router:4000/v1 is not reachable: ConnectError: [Errno 111] Connection refused; "
        "start it with `docker compose up -d router`"
    )
)


# -- the model ---------------------------------------------------------------------------------------------------


def test_model_preferred_when_served_else_the_first_served() -> None:
    assert default_model(["a", "b"], "b") == "b"
    assert default_model(["a", "b"], "c") == "a"
    assert default_model([], "c") == "c"
    assert default_model([], None) is None
    assert panel_model("b", ["a", "b"], None) == "b"
    assert panel_model("gone", ["a", "b"], None) == "a"
    assert panel_model(None, [], None) == NO_MODEL


def test_the_sessions_pick_goes_to_the_router_while_it_is_served() -> None:
    assert decide_model("qwen-0.5b", READY, None).model == "qwen-0.5b"
    assert decide_model(None, READY, "qwen-0.5b").model == "qwen-0.5b"
    assert decide_model(NO_MODEL, READY, None).model == "phi-4-mini"


def test_a_pick_that_is_gone_is_refused_in_words() -> None:
    decision = decide_model("vanished:1", READY, None)
    assert decision.model is None and decision.outcome == "rejected" and decision.resend_settings
    assert "**vanished:1** is no longer loaded" in decision.notice
    assert "phi-4-mini, qwen-0.5b" in decision.notice


def test_while_nothing_is_served_a_known_model_still_goes_to_the_router() -> None:
    # The router's own answer (a 503 naming what is down) says more than the chat could.
    assert decide_model("phi-4-mini", NOT_READY, None).model == "phi-4-mini"
    assert decide_model(None, NOT_READY, "phi-4-mini").model == "phi-4-mini"


def test_with_no_model_at_all_the_message_is_kept_and_the_reason_given() -> None:
    decision = decide_model(NO_MODEL, NOT_READY, None)
    assert decision.model is None and decision.outcome == "failed"
    assert decision.notice.startswith("**Could not answer.** No upstream serves a model yet")
    assert decision.notice.endswith("Your message was kept: send it again once that is done.")
    unreachable = decide_model(None, NO_ROUTER, None)
    assert "The router at http://router:4000/v1 is not reachable" in unreachable.notice
    assert "docker compose up -d router" in unreachable.notice


# -- notices -----------------------------------------------------------------------------------------------------


def test_no_model_page_lists_each_upstream_and_what_to_do() -> None:
    text = no_model_text(NOT_READY)
    assert text.startswith("**No model is reachable right now.**")
    assert "- `http://host.docker.internal:51211/v1`: down (connection failed: connection refused)" in text
    assert "- `http://foundry-local:5273/v1`: down" in text
    assert text.endswith("start Foundry Local or check FOUNDRY_LOCAL_URLS.")
    assert "- `http://foundry-local:5273/v1`: down (downloading 42%)" in no_model_text(
        RouterStatus(reachable=True, upstreams=(DOWNLOADING,))
    )


def test_no_model_page_when_the_router_itself_is_down() -> None:
    text = no_model_text(NO_ROUTER)
    assert "once the router is back" in text
    assert "the router at http://router:4000/v1 is not reachable: ConnectError" in text
    assert text.endswith("`docker compose up -d router`.")


def test_readyz_message() -> None:
    assert not_ready_message(NOT_READY) == "No upstream serves a model yet: start Foundry Local or check " + (
        "FOUNDRY_LOCAL_URLS."
    )
    assert not_ready_message(NO_ROUTER).startswith("The router at http://router:4000/v1 is not reachable")
    assert "start Foundry Local" in not_ready_message(RouterStatus(reachable=True))


def test_banner_follows_the_download() -> None:
    status = RouterStatus(reachable=True, upstreams=(DOWN, DOWNLOADING))
    preparing = status.preparing
    assert preparing is not None and preparing.upstream == "foundry-local:5273" and preparing.percent == 42
    text = banner_text(status)
    assert text.startswith("**The embedded model is downloading 42%** on `foundry-local:5273`.")
    assert "Downloading phi-4-mini: 42%." in text and "Chat works as soon as it is ready." in text
    loading = {**UP, "service_state": "loading"}
    assert banner_text(RouterStatus(reachable=True, upstreams=(loading,))).startswith(
        "**The embedded model is loading** on"
    )
    cloud = {**DOWNLOADING, "cloud": True}
    assert RouterStatus(reachable=True, upstreams=(cloud,)).preparing is None


def test_banner_once_the_download_is_over() -> None:
    assert banner_text(READY) == "The model is ready: ask away."
    failed = {**UP, "state": "down", "service_state": "failed", "error": "the download failed"}
    text = banner_text(RouterStatus(reachable=True, upstreams=(failed,)))
    assert text.startswith("**No model is reachable right now.**")
    assert "- `http://foundry-local:5273/v1`: down (failed; the download failed)" in text


# -- where it ran, and the footer -----------------------------------------------------------------------------------


def headers(**values: str) -> httpx2.Headers:
    return httpx2.Headers({f"X-Foundry-{name.replace('_', '-')}": value for name, value in values.items()})


def test_where_comes_from_the_routers_headers() -> None:
    where = Where.from_headers(
        headers(
            Upstream="foundry-local@10.0.0.5:5273",
            Upstream_Kind="local",
            Model="phi-4-mini:1",
            Route_Reason="least busy of 2 (0 in flight)",
            Failed_Over="a:1 answered HTTP 500; b:2 could not be reached",
        ),
        "phi-4-mini",
    )
    assert where == Where(
        "foundry-local@10.0.0.5:5273",
        "local",
        "phi-4-mini:1",
        "least busy of 2 (0 in flight)",
        ("a:1 answered HTTP 500", "b:2 could not be reached"),
    )
    cloud = Where.from_headers(headers(Upstream="api.cloud.test", Upstream_Kind="cloud"), "big")
    assert cloud is not None and cloud.cloud and cloud.model == "big" and cloud.failed_over == ()
    assert Where.from_headers(httpx2.Headers(), "m") is None


def answer(**fields: object) -> Answer:
    base: dict = {"model": "phi-4-mini", "route": "auto", "tokens": ["Hello"], "output_tokens": 12, "duration": 1.23}
    return Answer(**(base | fields))


def footer_parts(text: str) -> list[str]:
    found = re.search(r"\*— (.*)\*$", text)
    assert found, text
    return found.group(1).split(" · ")


def test_footer_says_where_it_ran_and_how_long_it_took() -> None:
    where = Where("foundry-local:5273", "local", "phi-4-mini", "least busy of 1 (0 in flight)")
    assert footer_parts(footer(answer(where=where))) == [
        "phi-4-mini on foundry-local:5273 (local)",
        "least busy of 1 (0 in flight)",
        "12 tokens",
        "1.2 s",
    ]
    cloud = Where("api.cloud.test", "cloud", "gpt-big", "cloud")
    assert footer_parts(footer(answer(where=cloud))) == ["gpt-big on api.cloud.test (cloud)", "12 tokens", "1.2 s"]
    failed_over = Where("b:2", "local", "phi-4-mini", "", ("a:1 answered HTTP 500",))
    assert footer_parts(footer(answer(where=failed_over)))[-1] == "after failing over from a:1 answered HTTP 500"
    assert footer_parts(footer(answer(where=None)))[0] == "phi-4-mini via the router"


def test_footer_of_a_failure_and_of_an_interrupted_answer() -> None:
    failed = footer(answer(tokens=[], outcome="failed", error="The router answered HTTP 503: nothing is up."))
    assert failed == (
        "**Could not answer.** The router answered HTTP 503: nothing is up. "
        "Your message was kept: send it again once that is done."
    )
    where = Where("foundry-local:5273", "local", "phi-4-mini")
    interrupted = footer(answer(where=where, outcome="interrupted", error="The answer was interrupted after 3 chunks."))
    assert interrupted.startswith("\n\n**[interrupted]** The answer was interrupted after 3 chunks.\n\n*— ")
    assert footer_parts(interrupted)[0] == "phi-4-mini on foundry-local:5273 (local)"


# -- the words for each failure -------------------------------------------------------------------------------------

REQUEST = httpx2.Request("POST", f"{ROUTER}/chat/completions")


def status_error(code: int, message: str, **response_headers: str) -> openai.APIStatusError:
    body = {"error": {"message": message, "type": "x", "param": None, "code": None}}
    response = httpx2.Response(code, json=body, headers=response_headers, request=REQUEST)
    return openai.APIStatusError(message, response=response, body=body["error"])


@pytest.mark.parametrize(
    ("exc", "kind", "detail", "advice"),
    [
        (
            status_error(503, "No upstream serves phi: foundry-local:5273 is down (connection refused)."),
            "http_503",
            "the router answered HTTP 503: No upstream serves phi: foundry-local:5273 is down (connection refused)",
            "try again once an upstream serves the model",
        ),
        (
            status_error(429, "Every queue for phi is full.", **{"Retry-After": "3"}),
            "http_429",
            "the router answered HTTP 429: Every queue for phi is full",
            "wait 3 s and try again",
        ),
        (
            status_error(429, "Every queue for phi is full: retry after 2 s.", **{"Retry-After": "2"}),
            "http_429",
            "Every queue for phi is full: retry after 2 s",
            "",  # said once, by the router
        ),
        (status_error(401, "Missing or wrong API key."), "http_401", "HTTP 401", "check ROUTER_API_KEY"),
        (status_error(404, "Unknown model x."), "http_404", "Unknown model x", "pick another model"),
        (status_error(400, "Too long for the context."), "http_400", "Too long for the context", "change the message"),
        (openai.APIConnectionError(request=REQUEST), "connection", f"the router at {ROUTER} could not be reached",
         "docker compose up -d router"),
        (httpx2.RemoteProtocolError("peer closed"), "connection", "closed the connection", "docker compose ps router"),
        (openai.APITimeoutError(REQUEST), "timeout", "sent nothing for 5 s (REQUEST_TIMEOUT_SECONDS)",
         "raise REQUEST_TIMEOUT_SECONDS"),
        (StreamError("foundry-local:5273 closed the connection.", reported=True), "stream_error",
         "foundry-local:5273 closed the connection", "check the router's log"),
        (StreamError("sent a line that is not JSON: 'x'"), "stream_error", "the router sent a line that is not JSON",
         "try again"),
        (RuntimeError("boom"), "RuntimeError", "the request failed (RuntimeError)", "service's log"),
    ],
)  # fmt: skip
def test_each_failure_in_words(exc: BaseException, kind: str, detail: str, advice: str) -> None:
    failure = classify(exc, ROUTER, 5)
    assert failure.kind == kind
    assert detail in failure.detail and not failure.detail.endswith(".")
    assert advice in failure.advice if advice else failure.advice == ""


def test_readyz_bodies_that_are_not_the_routers() -> None:
    assert status_from(ROUTER, 200, {"ready": True, "models": ["m"], "upstreams": [UP]}).models == ("m",)
    odd = status_from(ROUTER, 404, {"detail": "Not Found"})
    assert not odd.reachable and "answered HTTP 404 without a readiness report" in odd.message
    assert "is ROUTER_URL right?" in status_from(ROUTER, 200, None).message

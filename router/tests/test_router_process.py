"""The router as a real process in front of real processes: paced upstreams (a fixed token rate, so shares
and timings are the router's doing) and the real Foundry Local runtime with the tiny model."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from foundry_common.protocol import where_headers
from tests.support.paced import PACED_MODEL, start_paced_upstream
from tests.support.process import GatewayProcess, wait_until

pytestmark = pytest.mark.integration

TINY_MODEL = "tiny-model-generic-cpu:1"  # the gateway fixture registers .cache/tiny-model under its folder name


@dataclass
class Streamed:
    status: int
    headers: dict[str, str]
    text: str = ""
    tokens: int = 0
    error: dict | None = None
    body: dict = field(default_factory=dict)


async def stream(
    client: httpx.AsyncClient,
    base_url: str,
    model: str = PACED_MODEL,
    on_text: tuple[str, asyncio.Event] | None = None,
    **fields: object,
) -> Streamed:
    """One streamed chat completion, read event by event as a client does. `on_text` (upstream, event): the
    event is set when text arrives from that upstream."""
    request = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": True}
    async with client.stream("POST", f"{base_url}/chat/completions", json={**request, **fields}) as response:
        result = Streamed(response.status_code, dict(response.headers))
        if response.status_code != 200:
            result.body = json.loads(await response.aread())
            return result
        async for line in response.aiter_lines():
            if (where := where_headers(line)) is not None:  # a stream that waited in the queue: where it ran
                result.headers.update(where)
            if not line.startswith("data:") or line == "data: [DONE]":
                continue
            event = json.loads(line[5:])
            if "error" in event:
                result.error = event["error"]
                continue
            for choice in event.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    result.text += content
                    result.tokens += 1
                    if on_text is not None and result.headers.get("x-foundry-upstream") == on_text[0]:
                        on_text[1].set()
    return result


def run_streams(base_url: str, count: int, **fields: object) -> list[Streamed]:
    async def go() -> list[Streamed]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as client:
            return await asyncio.gather(*(stream(client, base_url, **fields) for _ in range(count)))

    return asyncio.run(go())


def test_streams_are_shared_evenly_and_the_runtime_answers_beside_them(fleet, gateway: GatewayProcess) -> None:
    paced = [fleet.paced(first_token_ms=20, token_interval_ms=10) for _ in range(3)]
    # Eight at once on each, from the start (a learned limit would start lower and queue: another test's subject).
    router = fleet.router([*(u.url for u in paced), f"{gateway.url}/v1"], UPSTREAM_MAX_CONCURRENCY="8",
                          ADMISSION="static")  # fmt: skip
    router.wait_ready(model=TINY_MODEL)
    router.wait_ready(model=PACED_MODEL)

    listing = httpx.get(f"{router.base_url}/models").json()["data"]
    by_id = {m["id"]: m for m in listing}
    assert sorted(by_id) == sorted([PACED_MODEL, TINY_MODEL]), "each model once"
    assert len(by_id[PACED_MODEL]["upstreams"]) == 3
    assert by_id[TINY_MODEL]["context_length"] == 4096

    results = run_streams(router.base_url, 24, max_tokens=30)
    assert [r.status for r in results] == [200] * 24
    assert all(r.tokens == 30 and r.error is None for r in results)
    shares = Counter(r.headers["x-foundry-upstream"] for r in results)
    assert len(shares) == 3
    for upstream, share in shares.items():
        assert 8 * 0.8 <= share <= 8 * 1.2, f"{upstream} took {share} of 24 streams: {shares}"
    assert sum(u.stats()["finished"] for u in paced) == 24

    (tiny,) = run_streams(router.base_url, 1, model=TINY_MODEL, max_tokens=5)
    assert tiny.status == 200 and tiny.tokens == 5
    assert tiny.headers["x-foundry-upstream"] == gateway.url.removeprefix("http://")
    assert tiny.headers["x-foundry-upstream-kind"] == "local"


def test_an_upstream_stopped_mid_run_fails_no_request_before_its_first_byte_and_returns_within_10s(fleet) -> None:
    paced = [fleet.paced(first_token_ms=20, token_interval_ms=20) for _ in range(3)]
    router = fleet.router([u.url for u in paced], UPSTREAM_MAX_CONCURRENCY="8", ADMISSION="static")
    router.wait_ready(model=PACED_MODEL)
    victim = paced[0]
    victim_name = victim.url.removeprefix("http://").removesuffix("/v1")

    async def go() -> tuple[list[Streamed], list[Streamed]]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as client:
            streaming = asyncio.Event()
            watch = (victim_name, streaming)
            first = [
                asyncio.create_task(stream(client, router.base_url, on_text=watch, max_tokens=40)) for _ in range(24)
            ]
            # Kill it once its answers stream text (as a crash would): those are cut, new requests must not notice.
            async with asyncio.timeout(10):
                await streaming.wait()
            victim.proc.kill()
            victim.proc.wait()
            second = await asyncio.gather(*(stream(client, router.base_url, max_tokens=10) for _ in range(24)))
            return list(await asyncio.gather(*first)), list(second)

    during, after = asyncio.run(go())
    assert all(r.status == 200 for r in during + after), [r.body for r in during + after if r.status != 200]
    cut = [r for r in during if r.error is not None]
    assert cut, "the streams on the killed upstream end with an error event"
    assert all(r.tokens > 0 and r.headers["x-foundry-upstream"] == victim_name for r in cut)
    assert "after part of the answer" in cut[0].error["message"]
    assert all(r.error is None and r.tokens == 10 for r in after), "nothing failed before its first byte"
    assert all(r.headers["x-foundry-upstream"] != victim_name for r in after)

    restarted_at = time.monotonic()
    fleet.upstreams.append(
        start_paced_upstream(first_token_ms=20, token_interval_ms=20, port=int(victim_name.split(":")[1]))
    )

    def back_in_rotation() -> bool:
        results = run_streams(router.base_url, 6, max_tokens=2)
        return any(r.headers.get("x-foundry-upstream") == victim_name for r in results)

    wait_until(back_in_rotation, 10, f"{victim_name} back in rotation", interval=0.2)
    print(f"back in rotation {time.monotonic() - restarted_at:.2f} s after its restart")


def test_a_failure_before_the_first_byte_moves_on_and_says_so(fleet) -> None:
    broken = fleet.paced(fail_status=500)
    healthy = fleet.paced(first_token_ms=5, token_interval_ms=1)
    router = fleet.router([broken.url, healthy.url])
    router.wait_ready(model=PACED_MODEL)
    results = run_streams(router.base_url, 4)
    assert all(r.status == 200 and r.tokens == 8 for r in results)
    failed_over = [r for r in results if "x-foundry-failed-over" in r.headers]
    assert failed_over, "the broken upstream was tried first at least once (it was the least busy)"
    assert "answered HTTP 500" in failed_over[0].headers["x-foundry-failed-over"]
    assert router.metric("router_failovers_total", upstream=broken.url[7:-3]) >= 1
    assert router.readyz()["upstreams"][0]["state"] == "down"


@pytest.mark.parametrize("mid_event", [False, True], ids=["between events", "mid-event"])
def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error_event(fleet, mid_event: bool) -> None:
    # Mid-event, as an upstream killed while it writes: the half event is dropped, every line the client reads is
    # whole JSON (`stream` parses each), and the error event comes on its own.
    flaky = fleet.paced(first_token_ms=5, token_interval_ms=2, break_after=5, break_mid_event=mid_event)
    router = fleet.router([flaky.url])
    router.wait_ready(model=PACED_MODEL)
    (result,) = run_streams(router.base_url, 1, max_tokens=20)
    assert result.status == 200 and result.tokens == 5
    assert result.error is not None and result.error["code"] == "upstream_failed"
    assert "after part of the answer" in result.error["message"]


def test_a_full_queue_answers_429_with_retry_after_and_never_piles_up(fleet) -> None:
    slow = fleet.paced(first_token_ms=300, token_interval_ms=10)
    router = fleet.router([slow.url], UPSTREAM_MAX_CONCURRENCY="1", UPSTREAM_QUEUE_SIZE="2")
    router.wait_ready(model=PACED_MODEL)
    results = run_streams(router.base_url, 6, max_tokens=2)
    codes = Counter(r.status for r in results)
    assert codes == {200: 3, 429: 3}, codes  # one in flight, two waiting, the rest refused at once
    refused = next(r for r in results if r.status == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.body["error"]["code"] == "queue_full" and "UPSTREAM_QUEUE_SIZE" in refused.body["error"]["message"]
    assert router.metric("router_queue_rejections_total", reason="queue_full") == 3
    assert router.metric("router_requests_total", code="429") == 3
    assert router.metric("router_upstream_queue_length") == 0 and router.metric("router_upstream_in_flight") == 0


def test_without_max_tokens_the_answer_fits_the_room_left_in_the_context(fleet, gateway: GatewayProcess) -> None:
    router = fleet.router([f"{gateway.url}/v1"], DEFAULT_MAX_TOKENS="3000")
    router.wait_ready(model=TINY_MODEL)
    long_prompt = "word " * 1500  # most of the tiny model's 4096-token context
    request = {"model": TINY_MODEL, "messages": [{"role": "user", "content": long_prompt}]}
    direct = httpx.post(f"{gateway.url}/v1/chat/completions", json={**request, "max_tokens": 3000}, timeout=60)
    assert direct.status_code == 400 and direct.json()["error"]["code"] == "context_length_exceeded"

    response = httpx.post(f"{router.base_url}/chat/completions", json=request, timeout=60)
    assert response.status_code == 200, response.text
    fitted = int(response.headers["x-foundry-max-tokens"])
    usage = response.json()["usage"]
    assert usage["completion_tokens"] == fitted  # the tiny model always writes max_tokens tokens
    assert usage["prompt_tokens"] + fitted <= 4096


def test_api_keys_guard_the_openai_routes_only(fleet) -> None:
    upstream = fleet.paced()
    router = fleet.router([upstream.url], ROUTER_API_KEYS="first-key,second-key")
    router.wait_ready(model=PACED_MODEL)
    missing = httpx.get(f"{router.base_url}/models")
    assert missing.status_code == 401 and "ROUTER_API_KEYS" in missing.json()["error"]["message"]
    wrong = httpx.post(f"{router.base_url}/chat/completions", headers={"authorization": "Bearer nope"}, json={})
    assert wrong.status_code == 401
    ok = httpx.get(f"{router.base_url}/models", headers={"authorization": "Bearer second-key"})
    assert ok.status_code == 200
    assert router.get("/healthz").status_code == 200 and router.get("/metrics").status_code == 200
    assert router.readyz()["warnings"] == []


def test_published_beyond_loopback_without_keys_says_so(fleet) -> None:
    upstream = fleet.paced()
    router = fleet.router([upstream.url], ROUTER_PUBLISHED_ADDRESS="0.0.0.0")
    router.wait_ready(model=PACED_MODEL)
    (warning,) = router.readyz()["warnings"]
    assert "without API keys" in warning and "ROUTER_API_KEYS" in warning
    assert "router_exposed" in router.log()


HI = [{"role": "user", "content": "x"}]
JSON = {"content-type": "application/json"}
BAD_REQUESTS = {
    "unknown role": ({"json": {"model": PACED_MODEL, "messages": [{"role": "wizard", "content": "x"}]}}, 400, None,
                     "messages[0].role"),
    "temperature out of range": ({"json": {"model": PACED_MODEL, "messages": HI, "temperature": 9}}, 400, None,
                                 "temperature"),
    "no model": ({"json": {"messages": HI}}, 400, "model_missing", "'model' is required"),
    "unknown model": ({"json": {"model": "nope", "messages": HI}}, 404, "model_not_found", PACED_MODEL),
    "body too large": ({"content": b"x" * 1_100_000, "headers": JSON}, 413, "body_too_large", "limit"),
    "a form": ({"content": b"model=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415,
               "unsupported_media_type", "JSON"),
    "broken JSON": ({"content": b"{not json", "headers": JSON}, 400, "invalid_json", "not valid JSON"),
    "unknown route": ({"json": {"model": PACED_MODEL, "messages": HI}, "headers": {"x-foundry-route": "moon"}}, 400,
                      "invalid_route", "local, cloud, auto"),
}  # fmt: skip


@pytest.mark.parametrize(("request_kwargs", "status", "code", "says"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_get_a_4xx_that_names_what_to_fix(fleet, request_kwargs, status, code, says) -> None:
    upstream = fleet.paced()
    router = fleet.router([upstream.url])
    router.wait_ready(model=PACED_MODEL)
    response = httpx.post(f"{router.base_url}/chat/completions", timeout=30, **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert says in error["message"] or says == error.get("param")
    if code:
        assert error["code"] == code
    assert upstream.stats()["started"] == 0, "nothing bad reaches an upstream"
    assert httpx.get(f"{router.base_url}/chat/completions").status_code == 405


def test_no_upstream_at_all_is_a_503_naming_each_and_readyz_says_so(fleet) -> None:
    gone = start_paced_upstream()
    gone.stop()
    router = fleet.router([gone.url])
    readyz = router.get("/readyz")
    assert readyz.status_code == 503 and readyz.json()["upstreams"][0]["state"] == "down"
    response = httpx.post(
        f"{router.base_url}/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 503
    assert gone.url.removeprefix("http://").removesuffix("/v1") in response.json()["error"]["message"]


def test_local_cloud_and_auto_routes_through_real_processes(fleet) -> None:
    local = fleet.paced(first_token_ms=5, token_interval_ms=1)
    cloud = fleet.paced(first_token_ms=5, token_interval_ms=1)  # any OpenAI server stands in for the cloud
    router = fleet.router(
        [local.url], CLOUD_BASE_URL=cloud.url, CLOUD_MODEL="big-cloud-model", CLOUD_API_KEY="cloud-secret",
        CLOUD_PROMPT_TOKENS="100",
    )  # fmt: skip
    router.wait_ready(model=PACED_MODEL)
    cloud_name = cloud.url.removeprefix("http://").removesuffix("/v1")

    def ask(route: str, content: str = "Hi") -> httpx.Response:
        return httpx.post(
            f"{router.base_url}/chat/completions",
            headers={"x-foundry-route": route},
            json={"model": PACED_MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 2},
            timeout=30,
        )

    routed = ask("cloud")
    assert routed.status_code == 200
    assert routed.headers["x-foundry-upstream"] == cloud_name and routed.headers["x-foundry-upstream-kind"] == "cloud"
    assert routed.headers["x-foundry-model"] == "big-cloud-model"
    assert ask("auto").headers["x-foundry-upstream-kind"] == "local"
    long_prompt = ask("auto", "x" * 600)
    assert long_prompt.headers["x-foundry-upstream-kind"] == "cloud"
    assert "CLOUD_PROMPT_TOKENS=100" in long_prompt.headers["x-foundry-route-reason"]
    assert ask("local", "x" * 600).headers["x-foundry-upstream-kind"] == "local", "local never goes to the cloud"

    local.stop()
    fallback = ask("auto")
    assert fallback.status_code == 200 and fallback.headers["x-foundry-upstream-kind"] == "cloud"
    refused = ask("local")
    assert refused.status_code == 503 and "no local Foundry Local upstream is reachable" in refused.text
    assert router.metric("router_route_decisions_total", route="cloud", reason="cloud_route") == 1
    assert router.metric("router_route_decisions_total", reason="cloud_prompt_size") == 1

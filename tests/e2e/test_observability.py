"""Monitoring on the running offline stack: every Grafana panel's query returns data from the real Prometheus
after traffic through the chat service and straight to the router, with the variables on "All" and on the
embedded model and upstream; the upstream-down alert fires when the embedded Foundry Local stops and resolves
when it comes back.

Grafana itself cannot be installed here (not in Debian, PyPI or npm): the dashboards' queries are run against
Prometheus exactly as Grafana would send them, with the variables filled in (tests/test_grafana_dashboards.py
checks the dashboards' JSON itself).
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from chat_support import ask_once

from tests.e2e.stack import EMBEDDED_MODEL, Stack
from tests.support.process import REPO, wait_until

pytestmark = pytest.mark.e2e

# What Grafana substitutes for "All" of a multi-value variable (its allValue), and a rate window that holds
# several of the stack's 15 s scrapes.
ALL = {"$model": ".*", "$upstream": ".*"}
RATE_INTERVAL = "1m"


def dashboards() -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((REPO / "grafana" / "dashboards").glob("*.json"))]


def grafana_regex(value: str) -> str:
    """One value of a variable as Grafana puts it into a Prometheus regex matcher: regex characters escaped, the
    backslashes doubled for the PromQL string."""
    return re.sub(r"([\\^$*+?.()|\[\]{}])", r"\\\\\1", value)


def panel_queries(values: dict[str, str], only_with_variables: bool = False) -> dict[str, str]:
    """Every target of every panel, keyed by dashboard / panel / refId, with the variables filled in."""
    queries = {}
    for dashboard in dashboards():
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                if only_with_variables and not any(variable in expr for variable in values):
                    continue
                for variable, value in {**values, "$__rate_interval": RATE_INTERVAL}.items():
                    expr = expr.replace(variable, value)
                queries[f"{dashboard['title']} / {panel['title']} / {target['refId']}"] = expr
    return queries


def query(stack: Stack, expr: str) -> list:
    response = httpx.get(f"{stack.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, f"{expr}: {response.text}"
    return response.json()["data"]["result"]


def router_client(stack: Stack) -> httpx.Client:
    """An OpenAI client's view of the router, with the key the chat service sends it (Compose's value)."""
    config = json.loads(stack.compose("config", "--format", "json").stdout)
    key = (config["services"]["chat-app"].get("environment") or {}).get("ROUTER_API_KEY") or "not-needed"
    return httpx.Client(base_url=stack.url("router"), headers={"Authorization": f"Bearer {key}"}, timeout=60)


def make_traffic(stack: Stack) -> str:
    """Answers through the chat service and straight from the router, and failures of both kinds; returns the
    upstream that answered the router's own request (its X-Foundry-Upstream)."""
    ask_once(stack.url("chat-app"), "Hello there")
    ask_once(stack.url("chat-app"), "And a second question")
    # Under MAX_INPUT_CHARS (8000) but over the model's 8192-token context: its byte-level tokenizer spells this rare
    # letter (U+1D537, fraktur z) in three tokens. The gateway refuses it with the token counts; the chat service
    # records an error of the upstream and shows the refusal with what to do.
    refused = ask_once(stack.url("chat-app"), "\U0001d537" * 3000).final_text()
    assert "more than the model's context of 8192 tokens" in refused, refused
    assert "Change the message or the chat settings as it says." in refused, refused
    assert ".." not in refused, refused
    # A tool's requests, straight to the router: one answered whole, one streamed, one for a model nobody serves.
    request = {"model": EMBEDDED_MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8}
    with router_client(stack) as router:
        whole = router.post("/v1/chat/completions", json=request)
        assert whole.status_code == 200, whole.text
        streamed = router.post("/v1/chat/completions", json={**request, "stream": True})
        assert streamed.status_code == 200, streamed.text
        assert "data:" in streamed.text and '"error"' not in streamed.text, streamed.text
        unknown = router.post("/v1/chat/completions", json={**request, "model": "no-such-model"})
        assert unknown.status_code == 404, unknown.text
    upstream = whole.headers["x-foundry-upstream"]
    assert "foundry-local" in upstream, upstream
    # The embedded gateway's own errors (its panels).
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
    unknown = httpx.post(f"{stack.url('foundry-local')}/v1/chat/completions", json=body)
    assert unknown.status_code == 404
    return upstream


def wait_for_data(stack: Stack, queries: dict[str, str], what: str) -> None:
    pending = dict(queries)

    def all_have_data() -> bool:
        for name, expr in list(pending.items()):
            if query(stack, expr):
                del pending[name]
        return not pending

    # Scrapes every 15 s, recording rules every 30 s over 5 m windows.
    try:
        wait_until(all_have_data, 240, f"every panel to have data ({what})", interval=5)
    except TimeoutError:
        pytest.fail(f"panels without data ({what}): {json.dumps(pending, indent=2)}")


def test_every_dashboard_panel_has_data_after_traffic(stack: Stack) -> None:
    upstream = make_traffic(stack)
    queries = panel_queries(ALL)
    assert len(queries) >= 30
    wait_for_data(stack, queries, "every model and upstream")

    # The variables' choices (label_values of these metrics) include the model and the upstream that answered.
    for dashboard in dashboards():
        for variable in dashboard["templating"]["list"]:
            metric, label = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]["query"]).groups()
            choices = {series["metric"].get(label) for series in query(stack, f"count by ({label}) ({metric})")}
            expected = {"model": EMBEDDED_MODEL, "upstream": upstream}[variable["name"]]
            assert expected in choices, f"{dashboard['title']} / ${variable['name']}: {choices}"

    # A person who picks that model and that upstream sees data in every panel that uses them: the router's
    # `upstream`, the chat service's `server_address` and the model labels all agree.
    chosen = {"$model": grafana_regex(EMBEDDED_MODEL), "$upstream": grafana_regex(upstream)}
    wait_for_data(stack, panel_queries(chosen, only_with_variables=True), f"{EMBEDDED_MODEL} on {upstream}")


def alert_states(stack: Stack, name: str) -> set[str]:
    alerts = httpx.get(f"{stack.url('prometheus')}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return {a["state"] for a in alerts if a["labels"]["alertname"] == name}


def embedded_upstream_down(stack: Stack) -> list:
    return query(stack, 'ALERTS{alertname="FoundryLocalUpstreamDown", alertstate="firing"}')


def test_upstream_down_alert_fires_when_the_embedded_service_stops_and_resolves(stack: Stack) -> None:
    # The alert only concerns an upstream that has served: make sure Prometheus has seen it up (the recording
    # rule over router_upstream_up that the alert reads, every 30 s).
    embedded_up = 'upstream:router_upstream_up:max{upstream=~".*foundry-local.*"} == 1'
    wait_until(lambda: bool(query(stack, embedded_up)), 120, "Prometheus to see the embedded upstream up", 2)
    # The host's Foundry Local (the host_foundry fixture) is a local upstream too, when the router reaches it.
    other_local_up = bool(
        query(stack, 'upstream:router_upstream_up:max{cloud="false", upstream!~".*foundry-local.*"} == 1')
    )
    stack.compose("stop", "foundry-local")
    try:
        # The router notices within its probe interval; recording every 30 s, `for: 1m`, evaluated every 15 s.
        wait_until(lambda: "firing" in alert_states(stack, "FoundryLocalUpstreamDown"), 240, "the alert to fire", 5)
        firing = embedded_upstream_down(stack)
        assert any("foundry-local" in a["metric"]["upstream"] for a in firing), firing
        assert all(a["metric"]["job"] == "router" for a in firing), firing
        if other_local_up:
            assert "firing" not in alert_states(stack, "FoundryLocalNoLocalUpstream")
    finally:
        stack.compose("start", "foundry-local")
    stack.compose("up", "--detach", "--wait", "--wait-timeout", "120", "foundry-local")
    wait_until(lambda: not embedded_upstream_down(stack), 180, "the alert to resolve", interval=5)
    stack.wait_chat_ready()

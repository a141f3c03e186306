"""Monitoring on the running offline stack: every Grafana panel's query returns data from the real Prometheus
after chat traffic, and the upstream-down alert fires when the embedded Foundry Local stops and resolves when it
comes back.

Grafana itself cannot be installed here (not in Debian, PyPI or npm): the dashboards' queries are run against
Prometheus exactly as Grafana would send them, with the variables filled in (tests/test_grafana_dashboards.py
checks the dashboards' JSON itself).
"""

from __future__ import annotations

import json

import httpx
import pytest
from chat_support import ask_once

from tests.e2e.stack import Stack
from tests.support.process import REPO, wait_until

pytestmark = pytest.mark.e2e

# What Grafana substitutes: every value of a multi-value variable ("All"), and a rate window that holds
# several of the stack's 15 s scrapes.
VARIABLES = {"$model": ".*", "$upstream": ".*", "$__rate_interval": "1m"}


def panel_queries() -> list[tuple[str, str]]:
    queries = []
    for path in sorted((REPO / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in VARIABLES.items():
                    expr = expr.replace(variable, value)
                queries.append((f"{dashboard['title']} / {panel['title']}", expr))
    return queries


def query(stack: Stack, expr: str) -> list:
    response = httpx.get(f"{stack.url('prometheus')}/api/v1/query", params={"query": expr}, timeout=10)
    assert response.status_code == 200, f"{expr}: {response.text}"
    return response.json()["data"]["result"]


def make_traffic(stack: Stack) -> None:
    """Answers through the chat service and the gateway, and failures of both kinds."""
    ask_once(stack.url("chat-app"), "Hello there")
    ask_once(stack.url("chat-app"), "And a second question")
    # Under MAX_INPUT_CHARS (8000) but over the tiny model's 4096-token context: its byte-level tokenizer has
    # never seen these letters together, one token each. The gateway refuses it with the token counts; the chat
    # service records an error of the upstream and shows the refusal with what to do.
    refused = ask_once(stack.url("chat-app"), "zqj" * 2000).final_text()
    assert "more than the model's context of 4096 tokens" in refused, refused
    assert "Change the message or the chat settings as it says." in refused, refused
    assert ".." not in refused, refused
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}
    unknown = httpx.post(f"{stack.url('foundry-local')}/v1/chat/completions", json=body)
    assert unknown.status_code == 404


def test_every_dashboard_panel_has_data_after_chat_traffic(stack: Stack) -> None:
    make_traffic(stack)
    queries = panel_queries()
    assert len(queries) >= 20
    pending = dict(queries)

    def all_have_data() -> bool:
        for name, expr in list(pending.items()):
            if query(stack, expr):
                del pending[name]
        return not pending

    # Scrapes every 15 s, recording rules every 30 s over 5 m windows.
    try:
        wait_until(all_have_data, 240, "every panel to have data", interval=5)
    except TimeoutError:
        pytest.fail(f"panels without data: {json.dumps(pending, indent=2)}")
    # The dashboards' variables (label_values of these) have values to choose from.
    assert query(stack, "count by (gen_ai_request_model) (gen_ai_client_operation_duration_seconds_count)")
    assert query(stack, "count by (upstream) (chat_upstream_up)")


def alert_states(stack: Stack, name: str) -> set[str]:
    alerts = httpx.get(f"{stack.url('prometheus')}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return {a["state"] for a in alerts if a["labels"]["alertname"] == name}


def embedded_upstream_down(stack: Stack) -> list:
    return query(stack, 'ALERTS{alertname="FoundryLocalUpstreamDown", alertstate="firing"}')


def test_upstream_down_alert_fires_when_the_embedded_service_stops_and_resolves(stack: Stack) -> None:
    # The alert only concerns an upstream that has served: make sure Prometheus has seen it up.
    wait_until(
        lambda: bool(query(stack, 'chat_upstream_up{upstream=~".*foundry-local.*"} == 1')),
        120,
        "Prometheus to see the embedded upstream up",
        interval=2,
    )
    stack.compose("stop", "foundry-local")
    try:
        # The chat service notices within its probe interval; `for: 1m`, evaluated every 15 s.
        wait_until(lambda: "firing" in alert_states(stack, "FoundryLocalUpstreamDown"), 240, "the alert to fire", 5)
        firing = embedded_upstream_down(stack)
        assert any("foundry-local" in a["metric"]["upstream"] for a in firing), firing
    finally:
        stack.compose("start", "foundry-local")
    stack.compose("up", "--detach", "--wait", "--wait-timeout", "120", "foundry-local")
    wait_until(lambda: not embedded_upstream_down(stack), 180, "the alert to resolve", interval=5)
    stack.wait_chat_ready()

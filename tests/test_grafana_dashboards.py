"""Grafana dashboards as files: consistent with each other and with the provisioned datasource, and every
metric a query names exists: a recording rule, a metric of the router (docs/router.md), of the chat service
or of the embedded gateway (their metrics modules), or Prometheus' own.
(Grafana itself cannot be installed here; whether every panel's query returns data is checked against
the real Prometheus in the end-to-end tests.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.support.process import REPO

pytestmark = pytest.mark.unit

GRAFANA = REPO / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# The modules that define the chat service's and the embedded gateway's metrics.
METRICS_MODULES = (
    REPO / "chat-app" / "src" / "foundry_chat" / "metrics.py",
    REPO / "foundry-local" / "src" / "foundry_embedded" / "metrics.py",
)
# Prometheus' own series: scrape health, the blackbox exporter's probes, alerts.
PROMETHEUS_SERIES = {"up", "probe_success", "ALERTS"}
# The chat service's metrics, now the router's (upstream discovery moved there).
REMOVED = {"chat_upstream_up", "chat_upstream_models", "chat_upstream_failovers_total"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def provisioned_uid() -> str:
    config = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = config["datasources"]
    return source["uid"]


def test_the_four_dashboards_exist() -> None:
    titles = {json.loads(p.read_text())["title"].split(": ")[-1] for p in DASHBOARDS}
    assert titles == {"overview", "latency", "throughput", "errors"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_consistent(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uid = provisioned_uid()
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for item in [*panels, *dashboard["templating"]["list"]]:
        assert item["datasource"]["uid"] == uid, item.get("title", item.get("name"))
    for p in panels:
        assert p["targets"], p["title"]
        for target in p["targets"]:
            assert target["datasource"]["uid"] == uid
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, f"{p['title']} uses undefined variables {used - variables}"


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(uids) == len(set(uids))


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (enough PromQL for the dashboards' queries)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values, regexes
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range windows
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)  # label lists
    expr = re.sub(r"\$\w+", "", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def test_metric_names_are_read_from_queries() -> None:
    expr = (
        'sum by (upstream) (rate(router_failovers_total{upstream=~"$upstream"}[$__rate_interval])) '
        "or on (upstream) (max by (upstream) (router_upstream_up) * 0) + histogram_quantile(0.95, "
        'sum by (le) (rate(x_bucket{job="router", a=~"b|c"}[5m]))) > bool 1 unless foundry_local_runtime_state'
    )
    assert promql_metric_names(expr) == {
        "router_failovers_total",
        "router_upstream_up",
        "x_bucket",
        "foundry_local_runtime_state",
    }


def known_metrics() -> set[str]:
    known = set(PROMETHEUS_SERIES)
    for path in sorted((REPO / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            known |= {rule["record"] for rule in group["rules"] if "record" in rule}
    # The router's metrics table: `name` (histogram) | labels | what.
    router_doc = (REPO / "docs" / "router.md").read_text().split("## Metrics", 1)[1]
    for name, kind in re.findall(r"^\| `(\w+)`( \(histogram\))? \|", router_doc, re.MULTILINE):
        known |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind else {name}
    # prometheus_client names: a Counter gains _total, a Histogram _bucket, _sum and _count.
    for path in METRICS_MODULES:
        for name in re.findall(r'"([a-z][a-z0-9_]*)"', path.read_text()):
            known |= {name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return known


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_names_metrics_that_exist(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    known = known_metrics()
    assert {"router_upstream_up", "router_requests_total", "gen_ai_server_time_to_first_token_seconds_bucket"} <= known
    queries = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    for variable in dashboard["templating"]["list"]:
        metric = re.fullmatch(r"label_values\((\w+), *\w+\)", variable["query"]["query"])
        assert metric, f"variable {variable['name']}: {variable['query']['query']}"
        assert variable["definition"] == variable["query"]["query"]
        queries.append((f"variable {variable['name']}", metric.group(1)))
    for title, expr in queries:
        names = promql_metric_names(expr)
        assert names, f"{title}: no metric in {expr}"
        assert not names & REMOVED, f"{title} uses removed metrics {names & REMOVED}"
        assert names <= known, f"{title} uses unknown metrics {names - known}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_gateway_and_router_server_metrics_are_told_apart(path: Path) -> None:
    """The router and the embedded gateway both export gen_ai_server_*: every selector names its job."""
    dashboard = json.loads(path.read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for selector in re.findall(r"(?<![\w:])gen_ai_server_\w+(?![\w:])(?:\{[^}]*\})?", target["expr"]):
                assert re.search(r'job="(router|foundry-local)"', selector), f"{panel['title']}: {selector}"


def test_upstream_variable_lists_the_routers_upstreams() -> None:
    for path in DASHBOARDS:
        variables = {v["name"]: v for v in json.loads(path.read_text())["templating"]["list"]}
        assert variables["upstream"]["query"]["query"] == "label_values(router_upstream_up, upstream)", path.name

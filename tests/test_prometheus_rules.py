"""Prometheus configuration and rules, checked and unit-tested by the real promtool (Debian's)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.process import REPO

pytestmark = pytest.mark.integration

PROMETHEUS = REPO / "prometheus"
# The chat service's upstream metrics, now the router's (router_upstream_up, router_failovers_total ...).
REMOVED = ("chat_upstream_up", "chat_upstream_models", "chat_upstream_failovers_total")


def rules() -> list[dict]:
    return [
        rule
        for path in sorted((PROMETHEUS / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is missing: run scripts/install-prerequisites (Debian package prometheus).")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS)


def test_rules_are_valid() -> None:
    rule_files = sorted(str(p.relative_to(PROMETHEUS)) for p in (PROMETHEUS / "rules").glob("*.yml"))
    assert rule_files
    result = promtool("check", "rules", *rule_files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    tests = sorted(str(p.relative_to(PROMETHEUS)) for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_tells_the_operator_what_to_do() -> None:
    alerts = [rule for rule in rules() if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "FoundryLocalUpstreamDown",
        "FoundryLocalNoLocalUpstream",
        "RouterQueueSaturated",
        "RouterRejectionRatioHigh",
        "ChatErrorRatioHigh",
        "ChatTimeToFirstTokenHigh",
        "ChatHistoryDown",
        "ChatHistoryWritesFailing",
        "ScrapeTargetDown",
    }
    tested = (PROMETHEUS / "tests" / "foundry-stack.rules.test.yml").read_text()
    for alert in alerts:
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert f"alertname: {alert['alert']}" in tested, f"{alert['alert']} has no promtool test"


@pytest.mark.parametrize("config", ["prometheus.yml", "../swarm/prometheus.yml"])
def test_prometheus_config_is_valid(config: str) -> None:
    result = promtool("check", "config", config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_tell_the_router_and_the_gateway_apart() -> None:
    """Both export gen_ai_server_*: every rule over them selects the job; no rule uses the removed metrics."""
    for rule in rules():
        name = rule.get("record") or rule["alert"]
        for selector in re.findall(r"(?<![\w:])gen_ai_server_\w+(?![\w:])(?:\{[^}]*\})?", rule["expr"]):
            assert re.search(r'job="(router|foundry-local)"', selector), f"{name}: {selector}"
        assert not any(metric in rule["expr"] for metric in REMOVED), name
    upstream_alerts = [r for r in rules() if r.get("alert", "").startswith("FoundryLocal")]
    assert upstream_alerts
    assert all("router_upstream_up" in r["expr"] for r in upstream_alerts)


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each panel's query, variables filled in as Grafana does, parsed by promtool as a recording rule."""
    values = {"$model": ".*", "$upstream": ".*", "$__rate_interval": "1m"}
    checked = []
    for path in sorted((REPO / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in values.items():
                    expr = expr.replace(variable, value)
                checked.append({"record": f"dashboard:query_{len(checked)}", "expr": expr})
    assert checked
    rule_file = tmp_path / "dashboards.rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": checked}]}))
    result = promtool("check", "rules", str(rule_file))
    assert result.returncode == 0, result.stdout + result.stderr

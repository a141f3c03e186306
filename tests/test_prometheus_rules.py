"""Prometheus configuration and rules, checked and unit-tested by the real promtool (Debian's)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.process import REPO

pytestmark = pytest.mark.integration

PROMETHEUS = REPO / "prometheus"


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
    import yaml

    groups = yaml.safe_load((PROMETHEUS / "rules" / "foundry-stack.rules.yml").read_text())["groups"]
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {
        "FoundryLocalUpstreamDown",
        "ChatErrorRatioHigh",
        "ChatTimeToFirstTokenHigh",
        "ScrapeTargetDown",
    }
    tested = (PROMETHEUS / "tests" / "foundry-stack.rules.test.yml").read_text()
    for alert in alerts:
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert f"alertname: {alert['alert']}" in tested, f"{alert['alert']} has no promtool test"


def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr

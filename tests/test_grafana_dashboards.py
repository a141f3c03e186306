"""Grafana dashboards as files: consistent with each other and with the provisioned datasource.
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

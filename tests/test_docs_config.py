"""Every configuration table in docs/ is what the settings classes say: one home for each default."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundry_common.config_docs import MARKER, render
from tests.support.process import REPO

pytestmark = pytest.mark.unit

PAGES = sorted((REPO / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_configuration_tables_match_the_settings(page: Path) -> None:
    text = page.read_text()
    assert render(text) == text, f"{page.name} is out of date: run scripts/docs-config"


def test_the_router_page_has_its_table() -> None:
    targets = {m.group("target") for m in MARKER.finditer((REPO / "docs" / "router.md").read_text())}
    assert targets == {"foundry_router.settings:Settings"}

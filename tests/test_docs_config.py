"""Every configuration table in docs/ is what the settings classes say: one home for each default."""

from __future__ import annotations

from pathlib import Path

import pytest

from foundry_common.config_docs import MARKER, render, settings_class
from tests.support.process import REPO

pytestmark = pytest.mark.unit

PAGES = sorted((REPO / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_configuration_tables_match_the_settings(page: Path) -> None:
    text = page.read_text()
    assert render(text) == text, f"{page.name} is out of date: run scripts/docs-config"


@pytest.mark.parametrize(
    ("page", "target"),
    [
        ("router.md", "foundry_router.settings:Settings"),
        ("foundry-local.md", "foundry_embedded.settings:Settings"),
        ("chat-app.md", "foundry_chat.settings:Settings"),
    ],
)
def test_the_service_page_has_its_table(page: str, target: str) -> None:
    targets = {m.group("target") for m in MARKER.finditer((REPO / "docs" / page).read_text())}
    assert targets == {target}


def test_every_setting_says_what_it_sets() -> None:
    for target in (
        "foundry_embedded.settings:Settings",
        "foundry_chat.settings:Settings",
        "foundry_router.settings:Settings",
    ):
        undescribed = [n for n, f in settings_class(target).model_fields.items() if not f.description]
        assert not undescribed, f"{target}: add description= to {undescribed}"

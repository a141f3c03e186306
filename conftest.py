"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.logs import sections as log_sections
from tests.support.postgres import PostgresNotInstalled, PostgresServer, start_postgres
from tests.support.process import REPO, GatewayProcess, chat_model_dir, ready_gateway, tiny_model_dir

# Chainlit writes its .chainlit/ config folder into its app root when first imported: not into the repo.
os.environ.setdefault("CHAINLIT_APP_ROOT", str(REPO / ".cache" / "chainlit"))
Path(os.environ["CHAINLIT_APP_ROOT"]).mkdir(parents=True, exist_ok=True)

TIERS = {"unit", "integration", "e2e", "browser"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test belongs to exactly one tier, so `-m TIER` selects all of it.
    for item in items:
        tiers = {mark.name for mark in item.iter_markers()} & TIERS
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid} must carry exactly one tier marker of {sorted(TIERS)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failing test's report carries the end of the logs of what the tests started (tests/support/logs.py)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for title, text in log_sections():
            report.sections.append((title, text))


@pytest.fixture(scope="session")
def chat_model() -> Path:
    """SmolLM2-135M-Instruct, the real model built by scripts/make-model (scripts/test builds it first): what every
    test that reads the meaning of an answer uses."""
    path = chat_model_dir()
    if not (path / "genai_config.json").is_file():
        pytest.fail(f"no model at {path}: run scripts/make-model first (scripts/test does).")
    return path


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The random tiny model of `scripts/make-model --tiny`: gibberish, and every answer runs to max_tokens. Only for
    tests that need that (a stream as long as they ask, to cut it mid-way) or speed; each says why."""
    path = tiny_model_dir()
    if not (path / "genai_config.json").is_file():
        pytest.fail(f"no tiny model at {path}: run scripts/make-model --tiny first (scripts/test does).")
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where tests leave files for people to look at (screenshots, logs)."""
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def gateway(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The embedded Foundry Local service serving the tiny model, as a local process; one per test module."""
    with ready_gateway(tmp_path_factory.mktemp("gateway"), FOUNDRY_MODEL_PATH=str(tiny_model)) as service:
        yield service


@pytest.fixture(scope="module")
def chat_gateway(chat_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The embedded Foundry Local service serving the real model (CHAT_MODEL_ID), as a local process."""
    with ready_gateway(tmp_path_factory.mktemp("chat-gateway"), FOUNDRY_MODEL_PATH=str(chat_model)) as service:
        yield service


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server (Debian's package, as a local process) for the whole session.

    Its `url` is the `postgres` database; give each test or module its own with `postgres.create_database(name)`.
    """
    try:
        server = start_postgres(tmp_path_factory.mktemp("postgres"))
    except PostgresNotInstalled as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    try:
        yield server
    finally:
        server.stop()

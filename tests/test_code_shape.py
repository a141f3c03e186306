"""The services' code stays in short functions: one a reader can hold in mind (issue 23 set the bound at 60 lines)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.process import REPO

pytestmark = pytest.mark.unit

MAX_FUNCTION_LINES = 60
SOURCES = sorted(
    path
    for folder in ("router", "chat-app", "foundry-local", "common")
    for path in (REPO / folder / "src").rglob("*.py")
)


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_function_is_longer_than_the_bound() -> None:
    assert SOURCES, "no sources found"
    found = [entry for path in SOURCES for entry in long_functions(path)]
    assert not found, "split these functions:\n" + "\n".join(found)

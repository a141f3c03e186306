"""Every script says what it does when asked (--help), and asking runs nothing else."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.process import REPO

pytestmark = pytest.mark.integration

SCRIPTS = sorted(p for p in (REPO / "scripts").iterdir() if p.is_file())


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_help_prints_the_usage_and_exits_0(script, tmp_path) -> None:
    images = {p.name: p.read_bytes() for p in (REPO / "docs" / "images").iterdir()}
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    first_line = result.stdout.strip().splitlines()[0]
    assert len(first_line) > 20, result.stdout
    assert f"Usage: scripts/{script.name}" in result.stdout, result.stdout
    assert {p.name: p.read_bytes() for p in (REPO / "docs" / "images").iterdir()} == images, "help changed files"

"""scripts/make-model --tiny: deterministic and cached."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.support.process import REPO

pytestmark = pytest.mark.integration


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_fresh_build_is_identical_and_a_rerun_is_cached(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny"
    script = str(REPO / "scripts" / "make-model")
    subprocess.run([script, "--tiny", str(out)], check=True, capture_output=True)
    assert digests(out) == digests(tiny_model)
    assert {"genai_config.json", "model.onnx", "tokenizer.json"} <= set(digests(out))

    again = subprocess.run([script, "--tiny", str(out)], check=True, capture_output=True, text=True)
    assert "up to date" in again.stdout

"""What the model builds share: progress lines, and the ONNX Runtime GenAI model builder run reproducibly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def step(name: str, started: list[float]) -> None:
    """One progress line: the seconds since the last step, and what was done."""
    now = time.perf_counter()
    print(f"  {now - started[0]:5.1f}s  {name}", flush=True)
    started[0] = now


def export_onnx(hf: Path, out: Path, work: Path, *options: str) -> None:
    """Run the ONNX Runtime GenAI model builder on a Hugging Face folder (its --help crashes; the options work)."""
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder",
           "-i", str(hf), "-o", str(out), "-c", str(work / "builder-cache"), *options]  # fmt: skip
    log = work / "builder.log"
    # The builder stamps model.onnx's producer_version with `git rev-parse HEAD` run in the folder above
    # its site-packages, which inside a repo's venv is that repo's commit: every commit would change the
    # model. Without a repository there it stamps the package's own commit, as installed from the wheel.
    env = {**os.environ, "GIT_DIR": str(work / "no-git-here")}
    with log.open("w") as sink:
        result = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        sys.stderr.write(log.read_text(errors="replace"))
        raise SystemExit(f"the ONNX Runtime GenAI builder failed (exit {result.returncode}): {' '.join(cmd)}")

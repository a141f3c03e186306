"""Start-up of the Compose stack as a user meets it: the whole offline stack (compose.yaml + compose.offline.yaml,
every service, images already built), each run a new project with new volumes.

  no model yet     the embedded service's model is still downloading (FOUNDRY_MODEL_URL on an archive server of
                   this benchmark's that sends a third of the archive, then holds): what a first run on a machine
                   without a model looks like. Issue 22's target: `up -d --wait` returns within a minute.
  model on disk    the offline model folder (OFFLINE_MODEL_DIR, loaded in seconds): `up -d --wait`, then until the
                   router lists the embedded model (up to the first answer it can give).

Figures are seconds, median and max over --runs; the load average is printed at the start and the end (a shared
machine is slower and noisier). The start-up figures tests used to assert (a healthy chat image within 30 s, the
gateway's within 10 s, the stack within 90 s) are read here instead.

Usage: scripts/bench startup [--runs N] [--only no-model|on-disk]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO)]
from tests.e2e.stack import EMBEDDED_MODEL, Stack  # noqa: E402
from tests.support.archive_server import model_archive, serve_archive  # noqa: E402
from tests.support.process import chat_model_dir, wait_until  # noqa: E402

ARCHIVE = "startup-model"
EXTRA_FILE = "tests/e2e/compose.first-run.yaml"  # the embedded service reaches this machine's archive server


def up_seconds(stack: Stack) -> float:
    started = time.monotonic()
    stack.compose("up", "--detach", "--wait", "--wait-timeout", "600")
    return time.monotonic() - started


def no_model_yet(model: Path) -> float:
    body = model_archive(model, ARCHIVE)
    with serve_archive(body, hold_at=len(body) // 3, host="0.0.0.0") as server:
        stack = Stack.create(
            f"fs-bench-start-{uuid.uuid4().hex[:6]}",
            extra_files=(EXTRA_FILE,),
            FOUNDRY_MODEL_URL=server.url(f"{ARCHIVE}.tar.gz", host="host.docker.internal"),
        )
        try:
            seconds = up_seconds(stack)
            readyz = httpx.get(f"{stack.url('router')}/readyz", timeout=10).json()
            embedded = [u for u in readyz.get("upstreams", []) if u["name"].startswith("foundry-local")]
            print(f"  no model yet: up --wait {seconds:.1f} s; the router sees {embedded and embedded[0]}")
            return seconds
        finally:
            server.release()
            stack.down(volumes=True)


def model_on_disk(model: Path) -> tuple[float, float]:
    stack = Stack.create(f"fs-bench-start-{uuid.uuid4().hex[:6]}", OFFLINE_MODEL_DIR=str(model))
    try:
        started = time.monotonic()
        up = up_seconds(stack)

        def served() -> bool:
            body = httpx.get(f"{stack.url('router')}/v1/models", timeout=5).json()
            return EMBEDDED_MODEL in {m["id"] for m in body.get("data", [])}

        wait_until(served, 300, "the router serving the embedded model", interval=0.25)
        model_seconds = time.monotonic() - started
        print(f"  model on disk: up --wait {up:.1f} s, the router serves the model at {model_seconds:.1f} s")
        return up, model_seconds
    finally:
        stack.down(volumes=True)


def summary(name: str, values: list[float]) -> str:
    return f"{name:<42} median {statistics.median(values):6.1f} s   max {max(values):6.1f} s   (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--only", choices=["no-model", "on-disk"])
    args = parser.parse_args()
    model = chat_model_dir()
    print(f"load average at start: {os.getloadavg()}")
    print("building the images (cached)...")
    Stack.create("fs-bench-build").compose("build", timeout=2400)
    no_model, on_disk_up, on_disk_model = [], [], []
    for run in range(1, args.runs + 1):
        print(f"run {run}")
        if args.only in (None, "no-model"):
            no_model.append(no_model_yet(model))
        if args.only in (None, "on-disk"):
            up, served = model_on_disk(model)
            on_disk_up.append(up)
            on_disk_model.append(served)
    print()
    if no_model:
        print(summary("no model yet: up -d --wait", no_model))
    if on_disk_up:
        print(summary("model on disk: up -d --wait", on_disk_up))
        print(summary("model on disk: until the router serves it", on_disk_model))
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""The WebGPU demo in Debian's Chromium, served by the real nginx: page ready time and inference latency on WASM
and on WebGPU, and the bytes transferred (compressed, as on the wire). WASM is the baseline of the ratios.

Here WebGPU is SwiftShader (a software fallback adapter): its figures measure the path, not GPU speed.
Targets (issue 5): ready <= 2 s on WASM (cold cache), transfer <= 7 MB.

Usage: scripts/bench webgpu [--loads N] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Playwright, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.browser.webgpu_site import CHROMIUM, build_site, launch_chromium_profile, serve

READY_TARGET_MS = 2000
TRANSFER_TARGET = 7_000_000
SAMPLES = (0, 3, 8)


def load(playwright: Playwright, url: str, ep: str, runs: int, classify: bool) -> dict:
    """One cold load in a fresh profile (empty cache), then a warm reload; optionally classify samples."""
    profile = tempfile.TemporaryDirectory(prefix="webgpu-bench-profile-")
    # WebGPU enabled for both providers, so that only the execution provider differs.
    context = launch_chromium_profile(playwright, Path(profile.name), webgpu=True)
    page = context.new_page()
    responses = []
    page.on("requestfinished", lambda request: responses.append(request))
    try:
        page.goto(f"{url}/?ep={ep}&runs={runs}")
        page.locator("body[data-state='ready'], body[data-state='error']").wait_for(timeout=300_000)
        if page.get_attribute("body", "data-state") != "ready":
            raise RuntimeError(page.inner_text("#session-status"))
        actual = page.get_attribute("body", "data-ep")
        if actual != ep:
            raise RuntimeError(f"asked for {ep}, the page runs {actual}")
        cold_ready = float(page.get_attribute("body", "data-ready-ms") or "nan")
        transferred = encoded = 0
        for request in responses:
            sizes = request.sizes()
            transferred += sizes["responseBodySize"] + sizes["responseHeadersSize"]
            encoded += sizes["responseBodySize"]
        cold_requests = len(responses)
        results = []
        if classify:
            for label in SAMPLES:
                before = int(page.get_attribute("#result-json", "data-seq") or 0)
                page.get_by_role("button", name=f"Classify sample digit {label}").click()
                page.locator(f"#result-json[data-seq='{before + 1}']").wait_for(state="attached", timeout=300_000)
                results.append(json.loads(page.text_content("#result-json") or "{}"))
        # Warm: the same context again; hashed assets come from the cache, only the page is revalidated.
        responses.clear()
        page.reload()
        page.locator("body[data-state='ready']").wait_for(timeout=300_000)
        warm_ready = float(page.get_attribute("body", "data-ready-ms") or "nan")
        warm_bytes = sum(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"] for r in responses)
        first_run = float(page.get_attribute("body", "data-first-run-ms") or "nan")
        return {
            "cold_ready_ms": cold_ready,
            "warm_ready_ms": warm_ready,
            "transfer": transferred,
            "body_bytes": encoded,
            "requests": cold_requests,
            "warm_transfer": warm_bytes,
            "results": results,
            "first_run_ms": first_run,
        }
    finally:
        context.close()
        profile.cleanup()


def chromium_version() -> str:
    return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip()


# Over 60 lines: one straight script (serve the page, drive the browser through each case in order, print);
# split, it would only pass the same handles around.
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=3, help="cold page loads per execution provider")
    parser.add_argument("--runs", type=int, default=30, help="repeated inferences per sample for the median")
    args = parser.parse_args()

    site = build_site()
    raw = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and p.suffix != ".gz" and p.name[0] != ".")
    print(f"site: {site} ({raw / 1e6:.2f} MB uncompressed)")
    figures: dict[str, dict] = {}
    with serve(site) as server, sync_playwright() as playwright:
        for ep in ("wasm", "webgpu"):
            loads = [load(playwright, server.url, ep, args.runs, classify=i == 0) for i in range(args.loads)]
            first = loads[0]
            figures[ep] = {
                "cold_ready_ms": statistics.median(x["cold_ready_ms"] for x in loads),
                "warm_ready_ms": statistics.median(x["warm_ready_ms"] for x in loads),
                "transfer": statistics.median(x["transfer"] for x in loads),
                "warm_transfer": statistics.median(x["warm_transfer"] for x in loads),
                "requests": first["requests"],
                "first_run_ms": statistics.median(x["first_run_ms"] for x in loads),
                "median_ms": statistics.median(r["medianMs"] for r in first["results"]),
                "single_ms": statistics.median(r["latencyMs"] for r in first["results"]),
                "threads": first["results"][0]["wasmThreads"],
                "isolated": first["results"][0]["crossOriginIsolated"],
            }
        version = chromium_version()

    wasm, gpu = figures["wasm"], figures["webgpu"]
    rows = [
        ("page ready, cold cache (ms)", "cold_ready_ms", "{:.0f}"),
        ("page ready, warm cache (ms)", "warm_ready_ms", "{:.0f}"),
        ("first inference, cold (ms)", "first_run_ms", "{:.2f}"),
        (f"inference median of {args.runs} (ms)", "median_ms", "{:.3f}"),
        ("inference, first per input (ms)", "single_ms", "{:.3f}"),
        ("transferred, cold (bytes)", "transfer", "{:,.0f}"),
        ("transferred, warm (bytes)", "warm_transfer", "{:,.0f}"),
    ]
    print(
        f"\n{args.loads} cold loads per provider (medians); WASM threads: {wasm['threads']}, "
        f"cross-origin isolated: {wasm['isolated']}; {wasm['requests']} requests per cold load"
    )
    print(f"{'':36} {'WASM':>14} {'WebGPU (SwiftShader)':>22} {'WebGPU / WASM':>14}")
    for title, key, fmt in rows:
        ratio = gpu[key] / wasm[key] if wasm[key] else float("nan")
        print(f"{title:36} {fmt.format(wasm[key]):>14} {fmt.format(gpu[key]):>22} {ratio:>13.2f}x")
    print(
        f"\ncompression: {wasm['transfer'] / 1e6:.2f} MB on the wire for {raw / 1e6:.2f} MB of files "
        f"({wasm['transfer'] / raw:.2f}x)"
    )
    ready_ok = wasm["cold_ready_ms"] <= READY_TARGET_MS
    transfer_ok = wasm["transfer"] <= TRANSFER_TARGET
    print(
        f"target ready <= {READY_TARGET_MS} ms on WASM: {wasm['cold_ready_ms']:.0f} ms "
        f"({wasm['cold_ready_ms'] / READY_TARGET_MS:.2f}x of target) {'met' if ready_ok else 'MISSED'}"
    )
    print(
        f"target transfer <= {TRANSFER_TARGET / 1e6:.0f} MB: {wasm['transfer'] / 1e6:.2f} MB "
        f"({wasm['transfer'] / TRANSFER_TARGET:.2f}x of target) {'met' if transfer_ok else 'MISSED'}"
    )
    print(f"({version}; nginx on {urlsplit(server.url).netloc}; WebGPU adapter: SwiftShader)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

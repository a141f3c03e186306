"""The chat page's token choice (webgpu-static/site/sampling.mjs), run by Node.js on the module as shipped."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import pytest

from tests.browser.webgpu_site import WEBGPU_STATIC

pytestmark = pytest.mark.unit

DRAWS = 20_000


def run(script: str) -> object:
    """The JSON that script prints; it sees pickToken, argmax and rng(seed), a seeded generator for random()."""
    node = shutil.which("node")
    assert node, "Node.js is missing: run scripts/install-prerequisites (Debian nodejs)"
    prelude = (
        f"import {{ pickToken, argmax }} from {json.dumps((WEBGPU_STATIC / 'site' / 'sampling.mjs').as_uri())};\n"
        # mulberry32: a small seeded generator, so that a failure can be replayed.
        "const rng = (seed) => () => { seed = (seed + 0x6D2B79F5) | 0; let t = Math.imul(seed ^ (seed >>> 15), "
        "1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };\n"
    )
    result = subprocess.run(
        [node, "--input-type=module", "-e", prelude + script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def counts(logits: list[float], temperature: float, top_p: float) -> list[int]:
    return run(
        f"const n = new Array({len(logits)}).fill(0); const random = rng(7);\n"
        f"for (let i = 0; i < {DRAWS}; i += 1) n[pickToken(Float32Array.from({logits}), "
        f"{{ temperature: {temperature}, topP: {top_p} }}, random)] += 1;\n"
        "console.log(JSON.stringify(n));"
    )


def test_greedy_is_numpys_argmax_first_of_equal_maxima() -> None:
    picked = run(
        "console.log(JSON.stringify([pickToken([1, 3, 3, 2]), pickToken([1, 3, 3, 2], { temperature: 0 }), "
        "argmax([-5, -1, -1]), pickToken([0.5], { temperature: 1 })]));"
    )
    assert picked == [1, 1, 1, 0]


def test_temperature_sampling_follows_the_softmax() -> None:
    logits, temperature = [2.0, 1.0, 0.0, -1.0], 0.8
    weights = [math.exp(x / temperature) for x in logits]
    expected = [w / sum(weights) for w in weights]
    observed = [n / DRAWS for n in counts(logits, temperature, 1.0)]
    for p, q in zip(observed, expected, strict=True):
        # Four standard deviations of a binomial proportion: fails for a wrong distribution, not by chance.
        assert abs(p - q) < 4 * math.sqrt(q * (1 - q) / DRAWS) + 1e-9, (observed, expected)


def test_top_p_keeps_only_the_nucleus() -> None:
    # Probabilities about 0.64, 0.24, 0.09, 0.03: top-p 0.8 keeps the first two, renormalised.
    logits = [2.0, 1.0, 0.0, -1.0]
    observed = counts(logits, 1.0, 0.8)
    assert observed[2] == observed[3] == 0
    assert abs(observed[0] / DRAWS - 0.64 / 0.88) < 0.02
    # A nucleus smaller than the top token's probability is the top token alone: greedy.
    assert counts(logits, 1.0, 0.1) == [DRAWS, 0, 0, 0]

"""The chat page's streamed text (webgpu-static/site/text-stream.mjs), run by Node.js on the module as shipped with
the site's own tokenizer library and the real models' tokenizers (issue 23): token by token, it must give exactly the
full decode of the answer, never show text that the full decode then changes, and decode a few tokens per token (not
the whole answer). The page's side (the message on screen, long answers) is in test_chat_page.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.browser.webgpu_site import WEBGPU_STATIC

pytestmark = pytest.mark.browser

# Accents, a euro sign, emoji (one of them a flag: two code points), CJK, and the spaces the tokenizer's clean-up
# removes (" ,", " .", " ?", " 's", " n't"), which the stream must not show before it knows.
TEXT = "Voilà, ça coûte 5 € 🦜🇫🇷! Hello , world . Is it ? 日本語 ' s, it 's fine and I don 't know n't.\n\tEnd."
RANDOM_IDS = 3000


def stream(site: Path, model: Path, ids_script: str) -> dict:
    """Streams the ids that ids_script computes (it sees tokenizer, decode and rng(seed)); returns what happened."""
    node = shutil.which("node")
    assert node, "Node.js is missing: run scripts/install-prerequisites (Debian nodejs)"
    (library,) = site.glob("vendor/huggingface-tokenizers-*/tokenizers.min.mjs")
    script = f"""
import {{ readFileSync }} from 'node:fs';
import {{ Tokenizer }} from {json.dumps(library.as_uri())};
import {{ TextStream }} from {json.dumps((WEBGPU_STATIC / "site" / "text-stream.mjs").as_uri())};
const read = (name) => JSON.parse(readFileSync({json.dumps(str(model))} + '/' + name, 'utf8'));
const tokenizer = new Tokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
// As ChatModel.decode in llm.mjs.
const decode = (ids) => (ids.length ? tokenizer.decode(ids, {{ skip_special_tokens: true }}) : '');
const rng = (seed) => () => {{ seed = (seed + 0x6D2B79F5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; }};
const ids = {ids_script};
let decoded = 0; // token ids decoded by the stream, all pushes together
const text = new TextStream((part) => {{ decoded += part.length; return decode(part); }});
const full = decode(ids);
const shown = [];
let wrong = null; // the first step at which the text shown so far is not the start of the full decode
ids.forEach((id, step) => {{
  shown.push(text.push(id));
  if (wrong === null && !full.startsWith(text.text)) wrong = {{ step, shown: text.text }};
}});
shown.push(text.end());
console.log(JSON.stringify({{
  ids, full, streamed: text.text, shown, wrong, decoded,
  alone: ids.map((id) => decode([id])),
}}));
"""
    result = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def models(chat_model: Path, tiny_model: Path) -> dict[str, Path]:
    return {"smollm2": chat_model, "tiny": tiny_model}


@pytest.mark.parametrize("model", ["smollm2", "tiny"])
def test_text_with_multibyte_characters_streams_as_its_full_decode(
    webgpu_site: Path, models: dict[str, Path], model: str
) -> None:
    run = stream(
        webgpu_site, models[model], f"tokenizer.encode({json.dumps(TEXT)}, {{ add_special_tokens: false }}).ids"
    )
    assert run["wrong"] is None, run["wrong"]
    assert run["streamed"] == run["full"] == "".join(run["shown"])
    # The clean-up of spaces is the page's (@huggingface/tokenizers: on unless tokenizer_config.json turns it off).
    assert ("world." in run["full"]) == (model == "smollm2")
    # The hard cases happened: tokens that end inside a character (alone they decode to U+FFFD) were held back
    # until the character was whole.
    split = [i for i, text in enumerate(run["alone"]) if "\ufffd" in text]
    assert split, run["alone"]
    assert any(run["shown"][i] == "" for i in split)
    assert "🦜" in "".join(run["shown"]) and "🇫🇷" in run["full"]
    # A few tokens decoded per token, not the answer so far (which would be len(ids)² / 2 in all).
    assert run["decoded"] <= 8 * len(run["ids"])


@pytest.mark.parametrize("model", ["smollm2", "tiny"])
def test_random_tokens_stream_as_their_full_decode(webgpu_site: Path, models: dict[str, Path], model: str) -> None:
    """Any ids, special and byte tokens included: invalid UTF-8 anywhere, as a random model writes."""
    vocab = "tokenizer.model.vocab.length"
    run = stream(
        webgpu_site,
        models[model],
        f"Array.from({{ length: {RANDOM_IDS} }}, ((r) => () => Math.floor(r() * {vocab}))(rng(23)))",
    )
    assert run["wrong"] is None, run["wrong"]
    assert run["streamed"] == run["full"] == "".join(run["shown"])
    assert "\ufffd" in run["full"]
    assert run["decoded"] <= 8 * RANDOM_IDS

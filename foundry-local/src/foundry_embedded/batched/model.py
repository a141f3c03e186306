"""The model folder in one ONNX Runtime session: its tokenizer, its chat template, one forward pass.

The folder is what ONNX Runtime GenAI's builder writes (model.onnx, genai_config.json, tokenizer.json, a chat
template): the decoder takes input_ids, attention_mask and past_key_values.N.key/value, and returns logits (the last
position only) and present.N.key/value. Its GroupQueryAttention takes each row's length from the mask (seqlens_k =
sum(mask) - 1, total_sequence_length = the mask's width) and writes a row's new key and value at that length, with
rotary positions from it: right-padded rows of different lengths decode together exactly as each would alone.

Trade-off: only such decoder-only GQA folders are served (checked on load, `UnsupportedModel` otherwise); the
tokenizer and template come from the folder through `tokenizers` and jinja2, as transformers would render them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class UnsupportedModel(Exception):
    """The folder is not a decoder this engine can batch (what is missing is the message)."""


class StepModel:
    def __init__(self, folder: Path, threads: int = 0) -> None:
        import onnxruntime as ort
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        config = json.loads((folder / "genai_config.json").read_text())["model"]
        decoder = config["decoder"]
        self.layers, self.vocab = decoder["num_hidden_layers"], config["vocab_size"]
        self.kv_heads, self.head_size = decoder["num_key_value_heads"], decoder["head_size"]
        self.context_length = config.get("context_length")
        eos = config["eos_token_id"]
        self.eos = frozenset(eos if isinstance(eos, list) else [eos])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        path = str(folder / decoder["filename"])
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.past_names = [f"past_key_values.{i}.{kind}" for i in range(self.layers) for kind in ("key", "value")]
        # By name: the graph lists every present key before every value, unlike the pasts.
        self.present_names = [name.replace("past_key_values", "present") for name in self.past_names]
        self._check(ort)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # As transformers renders chat templates; a prompt is text, not HTML: nothing to escape.
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self.template = environment.from_string(chat_template(folder))

    def _check(self, ort) -> None:
        inputs = {i.name for i in self.session.get_inputs()}
        missing = {"input_ids", "attention_mask", *self.past_names} - inputs
        if missing:
            raise UnsupportedModel(f"the decoder lacks the inputs {sorted(missing)[:4]}")
        if inputs - {"input_ids", "attention_mask", *self.past_names}:
            raise UnsupportedModel(f"the decoder takes inputs this engine does not feed: {sorted(inputs)[:6]}")

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        text = self.template.render(messages=messages, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def prefill(self, ids: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
        """A prompt alone (batch 1: logits are the last position only, so a padded batch would read the wrong one):
        its next-token logits and its cache, [1, kv_heads, len(ids), head_size] per past name."""
        empty = np.zeros((1, self.kv_heads, 0, self.head_size), dtype=np.float32)
        feeds = {"input_ids": np.asarray([ids], dtype=np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
        feeds |= dict.fromkeys(self.past_names, empty)
        logits, *present = self.session.run(["logits", *self.present_names], feeds)
        return logits[0, -1], present


def chat_template(folder: Path) -> str:
    """The folder's chat template: chat_template.jinja, else tokenizer_config.json's `chat_template`."""
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    config = json.loads((folder / "tokenizer_config.json").read_text())
    template = config.get("chat_template")
    if not isinstance(template, str):
        raise UnsupportedModel("the folder has no chat template (chat_template.jinja or tokenizer_config.json)")
    return template

"""What Python ONNX Runtime GenAI (the runtime inside Foundry Local) makes of a conversation with a model folder:
the chat template's prompt, its token ids and the greedy answer's token ids (answer_ids with the end-of-sequence
token that ended it, if one did; ids and reason as the chat page reports them: the page must give the same),
and how long that took (time to first token, tokens/s: scripts/bench webgpu's baseline).

Runs in the model-build virtual environment (.venvs/model-build: onnxruntime-genai), not the test one:
    python chat_reference.py MODEL_DIR TOKENS [--float32-activations] < messages.json    (prints JSON)

--float32-activations runs a copy of the model whose int4 matrix products (MatMulNBits) take their input in
float32, as ONNX Runtime Web computes them, instead of the builder's accuracy_level 4, which lets ONNX Runtime on an
x86 CPU quantize that input to int8. The two differ by a few tenths of a logit: enough to flip a near-tie between
two tokens, and then the rest of a greedy answer.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import onnxruntime_genai as og


@contextmanager
def float32_activations(model_dir: str):
    """A copy of the model folder with every MatMulNBits at accuracy_level 0 (float32 input)."""
    import onnx

    source = Path(model_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="float32-activations-") as tmp:
        for file in source.iterdir():
            if file.is_file() and file.name != "model.onnx":
                # Not a symlink: ONNX Runtime refuses external data that resolves outside the model's folder.
                try:
                    os.link(file, Path(tmp) / file.name)
                except OSError:
                    shutil.copyfile(file, Path(tmp) / file.name)
        graph = onnx.load(str(source / "model.onnx"), load_external_data=False)
        for node in graph.graph.node:
            if node.op_type == "MatMulNBits":
                for attribute in node.attribute:
                    if attribute.name == "accuracy_level":
                        attribute.i = 0
        onnx.save(graph, str(Path(tmp) / "model.onnx"))
        yield tmp


def reference(model_dir: str, messages: list[dict], tokens: int) -> dict:
    model = og.Model(model_dir)
    tokenizer = og.Tokenizer(model)
    prompt = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    ids = [int(i) for i in tokenizer.encode(prompt)]
    params = og.GeneratorParams(model)
    # min_length 0: the tiny model's genai_config asks for 4,096 tokens, which would hide an end of sequence.
    params.set_search_options(do_sample=False, max_length=len(ids) + tokens, min_length=0)
    started = time.perf_counter()
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    answer = []
    first = None
    while not generator.is_done():
        generator.generate_next_token()
        answer.append(int(generator.get_next_tokens()[0]))
        first = first or time.perf_counter()
    ended = time.perf_counter()
    eos = json.loads((Path(model_dir) / "genai_config.json").read_text())["model"]["eos_token_id"]
    # GenAI returns the end-of-sequence token that ended the answer; the page does not (it is no text).
    reason = "eos" if answer and answer[-1] in ([eos] if isinstance(eos, int) else eos) else "max_tokens"
    return {
        "prompt": prompt,
        "prompt_ids": ids,
        "answer_ids": answer,
        "answer": tokenizer.decode(answer),
        "ids": answer[:-1] if reason == "eos" else answer,
        "reason": reason,
        "ttft_ms": (first - started) * 1000,
        "tokens_per_second": (len(answer) - 1) / (ended - first) if len(answer) > 1 else None,
    }


if __name__ == "__main__":
    model_dir, tokens = sys.argv[1], int(sys.argv[2])
    messages = json.load(sys.stdin)
    if "--float32-activations" in sys.argv[3:]:
        with float32_activations(model_dir) as copy:
            print(json.dumps(reference(copy, messages, tokens)))
    else:
        print(json.dumps(reference(model_dir, messages, tokens)))

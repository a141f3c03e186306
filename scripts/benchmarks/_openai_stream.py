"""What the real-model benchmarks (model.py, batching.py) share: what they ask, one streamed chat completion read as
they need it (when the first and the last token came, the usage the server reported, the text), their closing line."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # batching.py's GenAI worker imports this module in a venv without aiohttp
    import aiohttp

# The chat's default system prompt, sent on every path, so that every path asks the model the same thing.
SYSTEM_PROMPT = "You are a helpful assistant. Answer concisely."
# Questions that a small instruct model answers at length (most answers run to max_tokens): stream i of a run asks
# QUESTIONS[(i + round) % 8] on every path.
QUESTIONS = [
    "Write a short story about a robot who learns to paint.",
    "Explain how a bicycle works.",
    "Describe a day in the life of a lighthouse keeper.",
    "Explain why the sky is blue, step by step.",
    "Write a letter to a friend about your trip to the mountains.",
    "Describe how bread is made, from flour to loaf.",
    "Explain how a computer stores information.",
    "Write a short story about a cat who finds a secret garden.",
]


def messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


@dataclass(frozen=True)
class Streamed:
    first: float  # perf_counter() at the first token
    last: float  # ... at the last one
    tokens: int  # completion_tokens of the usage the server sent
    text: str


async def stream_chat(session: aiohttp.ClientSession, url: str, body: dict) -> Streamed:
    """POST `body` (stream true, include_usage) to `url`/chat/completions; raise on an HTTP error, an error event, or an
    answer without tokens or usage."""
    first = last = 0.0
    usage, parts = 0, []
    async with session.post(f"{url}/chat/completions", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
        async for raw in response.content:
            if not raw.startswith(b"data: ") or raw.startswith(b"data: [DONE]"):
                continue
            event = json.loads(raw[6:])
            if "error" in event:
                raise RuntimeError(f"{url}: error event: {event['error']}")
            if event.get("usage"):
                usage = event["usage"]["completion_tokens"]
            for choice in event.get("choices") or ():
                if text := (choice.get("delta") or {}).get("content"):
                    parts.append(text)
                    last = time.perf_counter()
                    first = first or last
    if not first or not usage:
        raise RuntimeError(f"{url}: no tokens, or no usage (usage {usage})")
    return Streamed(first, last, usage, "".join(parts))


def closing_line(started: float, load_before: tuple[float, float, float]) -> str:
    """The run's length and the load average at its start and end: figures on a shared machine are lower."""
    load_after = os.getloadavg()
    return (
        f"\ntotal {time.perf_counter() - started:.0f} s; load average {load_before[0]:.1f} at the start, "
        f"{load_after[0]:.1f} at the end ({os.cpu_count()} CPUs: above that, other work shared them)"
    )


@contextlib.contextmanager
def local_services(prefix: str) -> Iterator[tuple[Path, list]]:
    """A scratch folder for the services' data and logs, and a list the caller appends each process it starts to
    (anything with `stop()`): on a failure each log's last lines are printed before the folder goes; at the end the
    processes are stopped, the last started first."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        processes: list = []
        try:
            yield Path(tmp), processes
        except BaseException:
            for log in sorted(Path(tmp).rglob("*.log")):
                lines = log.read_text(errors="replace").splitlines()
                print(f"--- {log} (last 15 of {len(lines)} lines)\n" + "\n".join(lines[-15:]), file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                with contextlib.suppress(Exception):
                    process.stop()

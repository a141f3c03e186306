"""Prometheus metrics of the gateway.

Latency metrics follow the OpenTelemetry GenAI *server* conventions in their Prometheus form
(gen_ai.server.time_to_first_token -> gen_ai_server_time_to_first_token_seconds, ...), with the
spec's advised buckets plus finer ones at the low end, where a small local model lives.
Everything the gateway measures per request goes through `Metrics`' methods; the runtime sets its gauges.
"""

from __future__ import annotations

import json
import time

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

from foundry_common.sse import StreamWatcher

OPERATION = "chat"  # gen_ai_operation_name: the gateway serves chat completions only
RUNTIME_STATES = ("starting", "downloading", "loading", "ready", "no_model", "failed", "stopping")

_FAST = (0.0005, 0.001, 0.0025, 0.005)
TTFT_BUCKETS = (*_FAST, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
PER_TOKEN_BUCKETS = (*_FAST, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
DURATION_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKENS_PER_SECOND_BUCKETS = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class Metrics:
    """All metrics on one registry, so that tests and several apps in one process don't collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        model = ("gen_ai_operation_name", "gen_ai_request_model")
        self.requests = Counter(
            "foundry_local_gateway_requests",
            "Requests answered by the gateway, by route, model and HTTP status (or 'cancelled').",
            ("route", "model", "status"), registry=r,
        )  # fmt: skip
        self.errors = Counter(
            "foundry_local_gateway_errors", "Failed requests by route, model and error type.",
            ("route", "model", "error_type"), registry=r,
        )  # fmt: skip
        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds", "Time from request to the last byte of the answer.",
            (*model, "error_type"), buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from request to the first generated token (streaming requests).",
            model, buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first one (streaming requests).",
            model, buckets=PER_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.output_tokens_per_second = Histogram(
            "foundry_local_output_tokens_per_second", "Output tokens per second of generation, per request.",
            model, buckets=TOKENS_PER_SECOND_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "foundry_local_tokens", "Tokens processed, by type (input or output).",
            (*model, "gen_ai_token_type"), registry=r,
        )  # fmt: skip
        # Set by the runtime (runtime.py) as the model is prepared.
        self.model_loaded = Gauge(
            "foundry_local_model_loaded", "1 while the model is loaded and served.", ("model",), registry=r
        )
        self.download_progress = Gauge(
            "foundry_local_model_download_progress_ratio", "Download progress of the model, 0 to 1.",
            ("model",), registry=r,
        )  # fmt: skip
        self.state = Enum(
            "foundry_local_runtime_state", "State of the embedded runtime.", states=list(RUNTIME_STATES), registry=r
        )

    # -- per request: what the gateway records, in one place --------------------------------------

    def answered(self, route: str, model: str, status: int | str) -> None:
        self.requests.labels(route, model, str(status)).inc()

    def failed(self, route: str, model: str, error_type: str) -> None:
        self.errors.labels(route, model, error_type).inc()

    def streamed(self, model: str, watcher: StreamWatcher, error: str | None) -> None:
        """A stream that ended (finished, broken or cancelled), from what its watcher saw."""
        labels = (OPERATION, model)
        self.request_duration.labels(*labels, error or "").observe(time.perf_counter() - watcher.started)
        if watcher.first_token_at is None:
            return
        self.time_to_first_token.labels(*labels).observe(watcher.first_token_at - watcher.started)
        tokens = watcher.output_tokens
        generation = watcher.last_token_at - watcher.first_token_at
        if tokens > 1:
            # 0 when a fast model's tokens all arrived in one read: faster than this gateway can tell apart.
            self.time_per_output_token.labels(*labels).observe(generation / (tokens - 1))
            if generation > 0:
                self.output_tokens_per_second.labels(*labels).observe((tokens - 1) / generation)
        self.count_tokens(model, watcher.usage, tokens)

    def completed(self, model: str, started: float, body: bytes) -> None:
        """A non-streamed answer: its duration, and its tokens as the usage in its JSON body states them."""
        elapsed = time.perf_counter() - started
        self.request_duration.labels(OPERATION, model, "").observe(elapsed)
        try:
            usage = json.loads(body).get("usage") or {}
        except (ValueError, AttributeError):
            usage = {}
        tokens = usage.get("completion_tokens") or 0
        if tokens and elapsed > 0:
            self.output_tokens_per_second.labels(OPERATION, model).observe(tokens / elapsed)
        self.count_tokens(model, usage, tokens)

    def count_tokens(self, model: str, usage: dict | None, output_tokens: int) -> None:
        labels = (OPERATION, model)
        prompt = (usage or {}).get("prompt_tokens")
        if isinstance(prompt, int):
            self.tokens.labels(*labels, "input").inc(prompt)
        self.tokens.labels(*labels, "output").inc(output_tokens)

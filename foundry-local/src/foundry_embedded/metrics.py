"""Prometheus metrics of the gateway.

Latency metrics follow the OpenTelemetry GenAI *server* conventions in their Prometheus form
(gen_ai.server.time_to_first_token -> gen_ai_server_time_to_first_token_seconds, ...), with the
spec's advised buckets plus finer ones at the low end, where a small local model lives.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

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
        model = ("gen_ai_operation_name", "gen_ai_request_model")
        self.requests = Counter(
            "foundry_local_gateway_requests",
            "Requests answered by the gateway, by route, model and HTTP status (or 'cancelled').",
            ("route", "model", "status"),
            registry=self.registry,
        )
        self.errors = Counter(
            "foundry_local_gateway_errors",
            "Failed requests by route, model and error type.",
            ("route", "model", "error_type"),
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "Time from request to the last byte of the answer.",
            (*model, "error_type"),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time from request to the first generated token (streaming requests).",
            model,
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first one (streaming requests).",
            model,
            buckets=PER_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.output_tokens_per_second = Histogram(
            "foundry_local_output_tokens_per_second",
            "Output tokens per second of generation, per request.",
            model,
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "foundry_local_tokens",
            "Tokens processed, by type (input or output).",
            (*model, "gen_ai_token_type"),
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            "foundry_local_model_loaded",
            "1 while the model is loaded and served.",
            ("model",),
            registry=self.registry,
        )
        self.download_progress = Gauge(
            "foundry_local_model_download_progress_ratio",
            "Download progress of the model, 0 to 1.",
            ("model",),
            registry=self.registry,
        )
        self.state = Enum(
            "foundry_local_runtime_state",
            "State of the embedded runtime.",
            states=list(RUNTIME_STATES),
            registry=self.registry,
        )

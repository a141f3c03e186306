"""Prometheus metrics: OpenTelemetry GenAI server-side names with an `upstream` label, plus the router's own.

Upstream state and load are read from the registry when Prometheus scrapes (a collector), so they can never
disagree with /readyz. Everything measured per request goes through `Recorder`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from foundry_common.sse import DURATION_BUCKETS, PER_TOKEN_BUCKETS, StreamWatcher
from foundry_router.upstreams import Registry, UpstreamStatus

MODEL = ("gen_ai_operation_name", "gen_ai_request_model", "upstream")


# The upstream gauges: name, help, and the status attribute each reads (with `cloud` as a label or not).
UPSTREAM_GAUGES = (
    ("router_upstream_up", "1 while the upstream is up and serves a model", True),
    ("router_upstream_models", "Models loaded on the upstream", True),
    ("router_upstream_in_flight", "Requests in flight to the upstream", False),
    ("router_upstream_queue_length", "Requests waiting for a slot on the upstream", False),
    ("router_upstream_queue_capacity", "Requests that may wait for the upstream (UPSTREAM_QUEUE_SIZE)", False),
    ("router_upstream_max_concurrency", "Most requests the upstream takes at once (UPSTREAM_MAX_CONCURRENCY)", False),
    ("router_upstream_concurrency_limit", "Requests admitted at once now: learned (ADMISSION) or the cap", False),
    ("router_upstream_stream_rate_floor_tokens_per_second", "The decode rate admission keeps each stream above", False),
)
# Only once the upstream has measured it: the decode rate of one stream at the concurrency last measured.
STREAM_RATE = ("router_upstream_stream_rate_tokens_per_second", "Decode rate of one stream, recent average")


def gauge_values(status: UpstreamStatus) -> tuple[float, ...]:
    slots = status.slots
    return (
        *(1 if status.serving else 0, len(status.models), slots.in_flight, slots.queued, slots.queue_size, slots.cap),
        *(slots.limit, slots.capacity.targets.rate_floor),
    )


class UpstreamCollector(Collector):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = [
            GaugeMetricFamily(name, text, labels=["upstream", "cloud"] if cloud else ["upstream"])
            for name, text, cloud in UPSTREAM_GAUGES
        ]
        rates = GaugeMetricFamily(*STREAM_RATE, labels=["upstream"])
        for status in self.registry.statuses:
            name, cloud = status.upstream.name, str(status.upstream.cloud).lower()
            for family, (_, _, with_cloud), value in zip(families, UPSTREAM_GAUGES, gauge_values(status), strict=True):
                family.add_metric([name, cloud] if with_cloud else [name], value)
            if (rate := status.slots.capacity.last_rate) is not None:
                rates.add_metric([name], rate)
        yield from (*families, rates)


class Recorder:
    """Every per-request measurement of the router, in one place."""

    def __init__(self, upstreams: Registry) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.duration = Histogram(
            "gen_ai_server_request_duration_seconds", "Time from the request to the last byte of the answer",
            (*MODEL, "error_type"), buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds", "Time from the request to the first content chunk (streams)",
            MODEL, buckets=DURATION_BUCKETS, registry=r,
        )  # fmt: skip
        self.per_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds", "Time per output token after the first (streams)",
            MODEL, buckets=PER_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.tokens = Counter(
            "router_tokens", "Tokens as the upstream reported them, by gen_ai_token_type (input or output)",
            ("gen_ai_request_model", "upstream", "gen_ai_token_type"), registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "router_requests",
            "Answered requests (chat, text completion, embeddings) by HTTP status (upstream empty when none chosen)",
            ("gen_ai_request_model", "upstream", "code"), registry=r,
        )  # fmt: skip
        self.rejections = Counter(
            "router_queue_rejections", "Requests answered 429 because the upstreams' queues were full or too slow",
            ("gen_ai_request_model", "reason"), registry=r,
        )  # fmt: skip
        self.failovers = Counter(
            "router_failovers", "Requests moved away from this upstream before the first byte", ("upstream",),
            registry=r,
        )  # fmt: skip
        self.decisions = Counter(
            "router_route_decisions", "Which upstream requests went to, by route and reason",
            ("upstream", "route", "reason"), registry=r,
        )  # fmt: skip
        r.register(UpstreamCollector(upstreams))

    def prepare(self, upstream: str) -> None:
        # Exported as 0 from the start, so that a rate (and its dashboard panel) exists before the first event.
        self.failovers.labels(upstream)

    def answered(self, model: str, upstream: str, code: int | str) -> None:
        self.requests.labels(model, upstream, str(code)).inc()

    def streamed(
        self, operation: str, model: str, upstream: str, watcher: StreamWatcher, error_type: str
    ) -> float | None:
        """Record a finished (or broken) stream; returns its time to first token, if a token came. `operation` is
        gen_ai_operation_name: chat, text_completion or embeddings."""
        labels = (operation, model, upstream)
        self.duration.labels(*labels, error_type).observe(time.perf_counter() - watcher.started)
        self.count_tokens(model, upstream, watcher.usage, watcher.output_tokens)
        if watcher.first_token_at is None:
            return None
        ttft = watcher.first_token_at - watcher.started
        self.ttft.labels(*labels).observe(ttft)
        tokens = watcher.output_tokens
        if tokens > 1 and watcher.last_token_at is not None:
            self.per_token.labels(*labels).observe((watcher.last_token_at - watcher.first_token_at) / (tokens - 1))
        return ttft

    def completed(
        self, operation: str, model: str, upstream: str, started: float, usage: dict | None, error_type: str = ""
    ) -> None:
        self.duration.labels(operation, model, upstream, error_type).observe(time.perf_counter() - started)
        output = (usage or {}).get("completion_tokens")
        self.count_tokens(model, upstream, usage, output if isinstance(output, int) else 0)

    def count_tokens(self, model: str, upstream: str, usage: dict | None, output_tokens: int) -> None:
        prompt = (usage or {}).get("prompt_tokens")
        if isinstance(prompt, int):
            self.tokens.labels(model, upstream, "input").inc(prompt)
        if output_tokens:
            self.tokens.labels(model, upstream, "output").inc(output_tokens)

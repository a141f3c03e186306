"""Prometheus metrics: the OpenTelemetry GenAI client conventions in Prometheus form, plus the service's own."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# The router's and the gateway's buckets (their server-side metrics and these client-side ones compare directly).
from foundry_common.sse import DURATION_BUCKETS
from foundry_common.sse import PER_TOKEN_BUCKETS as CHUNK_BUCKETS

# Bucket boundaries advised by the OTel GenAI semantic conventions.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

# server_address: the upstream that ran the request (the router's X-Foundry-Upstream), else the router itself.
GENAI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "server_address")
OUTCOMES = ("ok", "interrupted", "stopped", "failed", "rejected")
# The history's writes (data_layer.py), the `operation` label of chat_history_write_failures_total.
HISTORY_WRITES = (
    "create_step", "update_step", "delete_step", "update_thread", "delete_thread", "upsert_feedback",
    "delete_feedback", "create_user",
)  # fmt: skip


class ChatMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._add_genai_client(self.registry)
        self._add_service(self.registry)
        self._add_history(self.registry)

    def _add_genai_client(self, r: CollectorRegistry) -> None:
        """OpenTelemetry's GenAI client metrics, as the chat's users see each answer."""
        self.duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration, from request to the last chunk",
            (*GENAI_LABELS, "error_type"),
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.time_to_first_chunk = Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time from the request to the first streamed chunk",
            GENAI_LABELS,
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.time_per_output_chunk = Histogram(
            "gen_ai_client_operation_time_per_output_chunk_seconds",
            "Time between consecutive streamed chunks after the first",
            GENAI_LABELS,
            buckets=CHUNK_BUCKETS,
            registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per operation, by gen_ai_token_type (input or output), as the upstream reported them",
            (*GENAI_LABELS, "gen_ai_token_type"),
            buckets=TOKEN_BUCKETS,
            registry=r,
        )

    def _add_service(self, r: CollectorRegistry) -> None:
        # Upstreams, failovers and queues are the router's metrics (router_*); the chat only says whether it has one.
        self.router_up = Gauge("chat_router_up", "1 while the router's /readyz says it serves a model", registry=r)
        self.messages = Counter("chat_messages", "User messages handled, by outcome", ("outcome",), registry=r)
        self.active_sessions = Gauge("chat_active_sessions", "Chat sessions with a connected browser", registry=r)
        self.event_loop_lag = Histogram(
            "chat_event_loop_lag_seconds",
            "How late the event loop runs a timer: high values mean one task is blocking every user",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        for outcome in OUTCOMES:  # at 0 from the start: dashboards and alerts see a series, not a gap
            self.messages.labels(outcome)

    def _add_history(self, r: CollectorRegistry) -> None:
        """The history (data_layer.py): whether it is on, what failed, and the users' ratings of answers."""
        self.history_up = Gauge(
            "chat_history_up", "1 while the history database is open and its schema current", registry=r
        )
        self.history_write_failures = Counter(
            "chat_history_write_failures", "Writes to the history database that failed, by operation",
            ("operation",), registry=r,
        )  # fmt: skip
        self.history_read_failures = Counter(
            "chat_history_read_failures", "Reads from the history database that failed", registry=r
        )
        self.feedback = Counter(
            "chat_feedback", "Ratings of answers stored (thumbs up or down), by rating", ("rating",), registry=r
        )
        for rating in ("up", "down"):
            self.feedback.labels(rating)
        for operation in HISTORY_WRITES:
            self.history_write_failures.labels(operation)

    def track_sessions(self, count: Callable[[], int]) -> None:
        self.active_sessions.set_function(count)

"""The chat service (`python -m foundry_chat`) as a real local process, with the router it talks to.

`start_chat(tmp, upstream_urls)` starts a router in front of those upstreams and the chat pointed at it, as
Compose does; the environment given is split between them by name (the router's own variables go to the router,
a few both read go to both, the rest to the chat).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.logs import register
from tests.support.process import free_port, log_events, metric_sum, terminate, wait_until
from tests.support.router import RouterProcess, start_router

# The router's settings (router/src/foundry_router/settings.py): they go to the router only.
ROUTER_VARIABLES = {
    *("FOUNDRY_LOCAL_URLS", "FOUNDRY_LOCAL_API_KEYS", "FOUNDRY_LOCAL_PORT", "BASE_URL", "API_KEY"),
    *("CLOUD_BASE_URL", "CLOUD_MODEL", "CLOUD_API_KEY", "CLOUD_PROMPT_TOKENS", "ROUTER_DEFAULT_ROUTE"),
    *("PROBE_INTERVAL_SECONDS", "PROBE_MAX_BACKOFF_SECONDS", "PROBE_TIMEOUT_SECONDS"),
    *("UPSTREAM_MAX_CONCURRENCY", "UPSTREAM_QUEUE_SIZE", "QUEUE_TIMEOUT_SECONDS"),
    *("ADMISSION", "STREAM_RATE_FLOOR_TOKENS_PER_SECOND", "TTFT_BOUND_SECONDS"),
    *("DEFAULT_MAX_TOKENS", "MAX_REQUEST_BYTES", "ROUTER_API_KEYS", "ROUTER_HOST", "ROUTER_PORT"),
    "ROUTER_PUBLISHED_ADDRESS",
}
# Read by both.
SHARED_VARIABLES = {"REQUEST_TIMEOUT_SECONDS", "LOG_PROMPTS", "LOG_LEVEL", "LOG_FORMAT", "CONTEXT_TOKENS"}


@dataclass
class ChatProcess:
    proc: subprocess.Popen
    url: str
    log_path: Path
    # The router in front of the upstreams; stopped with the chat when start_chat started it.
    router: RouterProcess | None = None
    owns_router: bool = True

    def __post_init__(self) -> None:
        register(self)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict]:
        """The service's log events called `name`, in order."""
        return [e for e in log_events(self.log_path) if e.get("event") == name]

    def prompts(self, session_id: str) -> list[list[dict]]:
        """What the service sent upstream for one session (LOG_PROMPTS=true), in order."""
        return [e["messages"] for e in self.events("prompt") if e.get("session_id") == session_id]

    def wait_healthy(self, timeout: float = 60) -> None:
        """The chat answers /healthz and, when its router is ready, has seen that (its /readyz agrees)."""

        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chat service exited with {self.proc.returncode}:\n{self.log()[-5000:]}")
            try:
                return self.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        if self.router is not None and self.router.proc.poll() is None:
            self.router.wait_healthy(timeout)
        wait_until(healthy, timeout, "the chat service's /healthz")
        if self.router is not None and self.router.proc.poll() is None and self.router.get("/readyz").is_success:
            wait_until(lambda: self.readyz_status() == 200, 10, "the chat to see its router ready")

    def readyz_status(self) -> int:
        return self.get("/readyz").status_code

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels` (0 when absent)."""
        return metric_sum(self.get("/metrics").text, name, **labels)

    def stop(self, timeout: float = 15) -> int:
        code = terminate(self.proc, timeout)
        if self.router is not None and self.owns_router:
            self.router.stop(timeout)
        return code


def split_env(env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(the router's, the chat's) from one set of variables."""
    router = {k: v for k, v in env.items() if k in ROUTER_VARIABLES | SHARED_VARIABLES}
    chat = {k: v for k, v in env.items() if k not in ROUTER_VARIABLES}
    return router, chat


def start_chat(tmp: Path, upstream_urls: list[str], router: RouterProcess | None = None, **env: str) -> ChatProcess:
    """The chat in front of a new router in front of `upstream_urls`; or of `router`, when given (not stopped with
    the chat)."""
    router_env, chat_env = split_env(env)
    tmp.mkdir(parents=True, exist_ok=True)
    owns_router = router is None
    if router is None:
        router = start_router(tmp / "router", upstream_urls, **router_env)
    port = free_port()
    full_env = {
        **os.environ,
        "CHAT_HOST": "127.0.0.1",
        "CHAT_PORT": str(port),
        "CHAINLIT_APP_ROOT": str(tmp / "chainlit"),
        # The history (SQLite) and its token key: one per test's folder unless DATABASE_URL says otherwise.
        "CHAT_DATA_DIR": str(tmp / "data"),
        "ROUTER_URL": router.base_url,
        "ROUTER_POLL_SECONDS": "1",
        "LOG_FORMAT": "json",
        "MAX_TOKENS": "32",
        # As before the drain: an answer still running when a test stops the chat gets 5 s, not the default 25.
        "SHUTDOWN_GRACE_SECONDS": "5",
        **chat_env,
    }
    log_path = tmp / "chat.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "foundry_chat"], env=full_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    return ChatProcess(proc=proc, url=url, log_path=log_path, router=router, owns_router=owns_router)


@contextlib.contextmanager
def running_chat(tmp: Path, upstream_urls: list[str], **env: str) -> Iterator[ChatProcess]:
    """start_chat, healthy, and stopped at the end."""
    service = start_chat(tmp, upstream_urls, **env)
    try:
        service.wait_healthy()
        yield service
    finally:
        service.stop()

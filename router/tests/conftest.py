from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paced import PacedUpstream, start_paced_upstream
from tests.support.router import RouterProcess, start_router


class Fleet:
    """Paced upstreams and routers started by one test, all stopped at its end (their logs kept on failure)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.upstreams: list[PacedUpstream] = []
        self.routers: list[RouterProcess] = []

    def paced(self, **options: float) -> PacedUpstream:
        upstream = start_paced_upstream(**options)  # type: ignore[arg-type]
        self.upstreams.append(upstream)
        return upstream

    def paced_with(self, *flags: str, **options: float) -> PacedUpstream:
        """A paced upstream started with paced_upstream.py's other flags (--completions, --embeddings, --model ID,
        --alias NAME, --refuse-field NAME …)."""
        upstream = start_paced_upstream(flags=flags, **options)  # type: ignore[arg-type]
        self.upstreams.append(upstream)
        return upstream

    def router(self, urls: list[str], **env: str) -> RouterProcess:
        router = start_router(self.tmp / f"router-{len(self.routers)}", urls, **env)
        self.routers.append(router)
        router.wait_healthy()
        return router

    def stop(self) -> None:
        for process in [*self.routers, *self.upstreams]:
            if process.proc.poll() is None:
                process.stop()


@pytest.fixture
def fleet(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    fleet = Fleet(tmp_path)
    try:
        yield fleet
    finally:
        fleet.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            for router in fleet.routers:
                print(f"--- {router.log_path} ---\n{router.log()[-8000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

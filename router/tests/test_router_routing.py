"""Routing rules: local first, cloud for cloud profiles, long prompts and when no local upstream is up."""

from __future__ import annotations

import pytest

from foundry_router.admission import Slots
from foundry_router.routing import least_busy, plan_route
from foundry_router.upstreams import Upstream, UpstreamStatus

pytestmark = pytest.mark.unit

HOST = Upstream("host.docker.internal:51211", "http://host.docker.internal:51211/v1", "k")
EMBEDDED = Upstream("foundry-local:5273", "http://foundry-local:5273/v1", "k")
CLOUD = Upstream("api.cloud.test", "https://api.cloud.test/v1", "secret", cloud=True, fixed_model="big-model")


def status(upstream: Upstream, up: bool, *models: str, aliases: dict[str, str] | None = None) -> UpstreamStatus:
    state, error = ("up", "") if up else ("down", "refused")
    slots = Slots(cap=4, queue_size=8)
    return UpstreamStatus(upstream, slots, state=state, models=models, error=error, aliases=aliases or {})


def names(plan) -> list[str]:
    return [t.upstream.name for t in plan.targets]


def test_local_upstreams_in_order_that_serve_the_model() -> None:
    statuses = [status(HOST, True, "phi"), status(EMBEDDED, True, "phi", "qwen")]
    assert names(plan_route(statuses, "phi", "auto", 10, 0)) == [HOST.name, EMBEDDED.name]
    assert names(plan_route(statuses, "qwen", "auto", 10, 0)) == [EMBEDDED.name]


def test_down_upstream_is_skipped() -> None:
    statuses = [status(HOST, False), status(EMBEDDED, True, "phi")]
    assert names(plan_route(statuses, "phi", "local", 10, 0)) == [EMBEDDED.name]


def test_cloud_is_the_last_resort_in_auto() -> None:
    statuses = [status(HOST, True, "phi"), status(CLOUD, True)]
    plan = plan_route(statuses, "phi", "auto", 10, 0)
    assert names(plan) == [HOST.name, CLOUD.name]
    assert plan.targets[-1].model == "big-model"


def test_cloud_when_no_local_upstream_is_up() -> None:
    statuses = [status(HOST, False), status(EMBEDDED, False), status(CLOUD, True)]
    plan = plan_route(statuses, "phi", "auto", 10, 0)
    assert names(plan) == [CLOUD.name]
    assert "no local upstream" in plan.targets[0].reason


def test_long_prompt_goes_to_the_cloud_first() -> None:
    statuses = [status(HOST, True, "phi"), status(CLOUD, True)]
    plan = plan_route(statuses, "phi", "auto", 5000, 4000)
    assert names(plan) == [CLOUD.name, HOST.name]
    assert "CLOUD_PROMPT_TOKENS" in plan.targets[0].reason
    assert names(plan_route(statuses, "phi", "auto", 3000, 4000)) == [HOST.name, CLOUD.name]


def test_local_profile_never_uses_the_cloud() -> None:
    statuses = [status(HOST, False), status(CLOUD, True)]
    plan = plan_route(statuses, "phi", "local", 10, 1)
    assert plan.targets == ()
    assert "no local Foundry Local upstream is reachable" in plan.problem
    assert HOST.name in plan.problem


def test_cloud_profile() -> None:
    statuses = [status(HOST, True, "phi"), status(CLOUD, True)]
    assert names(plan_route(statuses, "phi", "cloud", 10, 0)) == [CLOUD.name]
    plan = plan_route([status(HOST, True, "phi")], "phi", "cloud", 10, 0)
    assert plan.targets == () and "CLOUD_BASE_URL" in plan.problem


def test_model_that_disappeared_is_named_with_what_is_loaded() -> None:
    plan = plan_route([status(HOST, True, "qwen")], "phi", "auto", 10, 0)
    assert plan.targets == ()
    assert "'phi' is not loaded on any upstream" in plan.problem and "qwen" in plan.problem
    assert plan.status == 404


def test_nothing_reachable_is_a_503() -> None:
    plan = plan_route([status(HOST, False)], "phi", "auto", 10, 0)
    assert plan.status == 503 and "refused" in plan.problem


def busy(s: UpstreamStatus, in_flight: int, ttft: float | None = None) -> UpstreamStatus:
    s.slots.in_flight, s.ttft_seconds = in_flight, ttft
    return s


THIRD = Upstream("third:3", "http://third:3/v1", "k")


def test_least_in_flight_first() -> None:
    statuses = [
        busy(status(HOST, True, "phi"), 3),
        busy(status(EMBEDDED, True, "phi"), 1),
        busy(status(THIRD, True, "phi"), 2),
    ]
    plan = plan_route(statuses, "phi", "local", 10, 0)
    order = least_busy(list(plan.targets), {s.upstream: s for s in statuses})
    assert [t.upstream.name for t in order] == [EMBEDDED.name, THIRD.name, HOST.name]


def test_ties_go_to_the_lower_recent_time_to_first_token_then_the_configured_order() -> None:
    statuses = [
        busy(status(HOST, True, "phi"), 1, ttft=0.200),
        busy(status(EMBEDDED, True, "phi"), 1, ttft=0.050),
        busy(status(THIRD, True, "phi"), 1, ttft=0.050),
    ]
    plan = plan_route(statuses, "phi", "local", 10, 0)
    order = least_busy(list(plan.targets), {s.upstream: s for s in statuses})
    assert [t.upstream.name for t in order] == [EMBEDDED.name, THIRD.name, HOST.name]


def test_queued_requests_count_as_load() -> None:
    statuses = [busy(status(HOST, True, "phi"), 4), busy(status(EMBEDDED, True, "phi"), 4)]
    statuses[0].slots._waiters.extend([object(), object()])  # two waiting on the host
    plan = plan_route(statuses, "phi", "local", 10, 0)
    order = least_busy(list(plan.targets), {s.upstream: s for s in statuses})
    assert order[0].upstream == EMBEDDED


def test_the_cloud_tier_only_after_every_local_one() -> None:
    statuses = [busy(status(HOST, True, "phi"), 9), status(CLOUD, True)]
    plan = plan_route(statuses, "phi", "auto", 10, 0)
    by = {s.upstream: s for s in statuses}
    assert [t.upstream for t in least_busy(list(plan.targets), by)] == [HOST]
    assert [t.upstream for t in least_busy([t for t in plan.targets if t.upstream != HOST], by)] == [CLOUD]


def test_an_alias_is_routed_to_the_model_it_names_on_each_upstream() -> None:
    """Every upstream with a loaded model under that alias is a candidate, asked for its own id."""
    statuses = [
        status(HOST, True, "phi-4-mini-cpu:5", aliases={"phi-4-mini": "phi-4-mini-cpu:5"}),
        status(EMBEDDED, True, "phi-4-mini-gpu:4", "qwen", aliases={"phi-4-mini": "phi-4-mini-gpu:4"}),
    ]
    plan = plan_route(statuses, "phi-4-mini", "local", 10, 0)
    assert [(t.upstream.name, t.model) for t in plan.targets] == [
        (HOST.name, "phi-4-mini-cpu:5"),
        (EMBEDDED.name, "phi-4-mini-gpu:4"),
    ]
    # The least busy of them is picked, as for an id.
    statuses[0].slots.take()
    ordered = least_busy(list(plan.targets), {s.upstream: s for s in statuses})
    assert ordered[0].model == "phi-4-mini-gpu:4"


def test_an_exact_id_wins_over_an_alias_of_the_same_name() -> None:
    statuses = [
        status(HOST, True, "phi-4-mini-cpu:5", aliases={"phi-4-mini": "phi-4-mini-cpu:5"}),
        status(EMBEDDED, True, "phi-4-mini"),
    ]
    plan = plan_route(statuses, "phi-4-mini", "local", 10, 0)
    assert [(t.upstream.name, t.model) for t in plan.targets] == [(EMBEDDED.name, "phi-4-mini")]


def test_an_alias_of_a_model_no_longer_loaded_or_of_a_down_upstream_is_no_candidate() -> None:
    statuses = [
        status(HOST, False, aliases={"phi-4-mini": "phi-4-mini-cpu:5"}),
        status(EMBEDDED, True, "qwen", aliases={"phi-4-mini": "phi-4-mini-gpu:4", "q": "qwen"}),
    ]
    plan = plan_route(statuses, "phi-4-mini", "local", 10, 0)
    assert (plan.targets, plan.status) == ((), 404)
    assert "loaded now: qwen (alias q)" in plan.problem

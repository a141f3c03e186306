"""Which upstreams a request may go to, in the order to try them.

Pure: takes the upstream statuses and the rules, returns a plan with a reason written for people. Targets
come in tiers: the proxy takes the least busy upstream of the first tier that has one left, and moves to
the next tier only when a whole tier failed ("local first, cloud fallback").

A request's `model` is a model id or an alias an upstream reported (the embedded gateway's `alias`). An id wins:
when any local upstream serves a model under that very id, only those are candidates. Otherwise every upstream
with a loaded model under that alias is one, each asked for its own id: the least busy is picked, as for an id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from foundry_common.protocol import Route
from foundry_router.upstreams import Upstream, UpstreamStatus


@dataclass(frozen=True)
class Target:
    upstream: Upstream
    model: str
    reason: str  # why this upstream: sent back in X-Foundry-Route-Reason and logged
    reason_code: str = "local"  # the same, as a metric label
    tier: int = 0


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    # When there is nowhere to go: what is wrong, for people, and the HTTP status that says it.
    problem: str = ""
    status: int = 503


def plan_route(
    statuses: list[UpstreamStatus],
    model: str,
    route: Route,
    prompt_tokens: int,
    cloud_prompt_tokens: int,
) -> Plan:
    local = [s for s in statuses if not s.upstream.cloud]
    cloud = next((s for s in statuses if s.upstream.cloud), None)
    cloud_model = cloud.upstream.fixed_model if cloud is not None else None

    def to_cloud(reason: str, code: str, tier: int) -> Target:
        assert cloud is not None and cloud_model
        return Target(cloud.upstream, cloud_model, reason, code, tier)

    if route == "cloud":
        if cloud is None or not cloud_model:
            return Plan((), "this request is routed to the cloud, but no cloud upstream is configured (CLOUD_BASE_URL)")
        return Plan((to_cloud("routed to the cloud", "cloud_route", 0),))

    local_targets = local_candidates(local, model)
    if route == "auto" and cloud is not None and cloud_model:
        if cloud_prompt_tokens and prompt_tokens > cloud_prompt_tokens:
            reason = f"prompt of ~{prompt_tokens} tokens is over CLOUD_PROMPT_TOKENS={cloud_prompt_tokens}"
            later = tuple(Target(t.upstream, t.model, t.reason, t.reason_code, 1) for t in local_targets)
            return Plan((to_cloud(reason, "cloud_prompt_size", 0), *later))
        if not local_targets:
            return Plan((to_cloud("no local upstream serves the model", "cloud_fallback", 0),))
        return Plan((*local_targets, to_cloud("the local upstreams failed", "cloud_fallback", 1)))

    if local_targets:
        return Plan(local_targets)
    return local_problem(local, model, cloud_model)


def local_candidates(local: list[UpstreamStatus], model: str) -> tuple[Target, ...]:
    by_id = tuple(Target(s.upstream, model, "local", "least_in_flight") for s in local if s.serves(model))
    if by_id:
        return by_id
    by_alias = ((s, s.model_for_alias(model)) for s in local)
    return tuple(Target(s.upstream, m, "local", "least_in_flight") for s, m in by_alias if m is not None)


def local_problem(local: list[UpstreamStatus], model: str, cloud_model: str | None) -> Plan:
    up = [s for s in local if s.state == "up"]
    if not up:
        details = "; ".join(f"{s.upstream.name}: {s.error or s.state}" for s in local) or "none is configured"
        return Plan((), f"no local Foundry Local upstream is reachable ({details})")
    aliases = {m: a for s in up for a, m in s.aliases.items()}
    loaded = sorted({m for s in up for m in s.models} | ({cloud_model} if cloud_model else set()))
    loaded = [f"{m} (alias {aliases[m]})" if m in aliases else m for m in loaded]
    return Plan(
        (), f"the model '{model[:200]}' is not loaded on any upstream (loaded now: {', '.join(loaded) or 'none'})", 404
    )


def least_busy(targets: list[Target], status_of: dict[Upstream, UpstreamStatus]) -> list[Target]:
    """The first tier's targets, fewest requests in flight first; ties: lower recent time to first token, then
    the configured order (a new upstream with no measurement yet counts as fastest, so it gets tried)."""
    if not targets:
        return []
    tier = min(t.tier for t in targets)
    first = [(i, t) for i, t in enumerate(targets) if t.tier == tier]

    def load(item: tuple[int, Target]) -> tuple[int, float, int]:
        index, target = item
        status = status_of.get(target.upstream)
        if status is None:
            return (math.inf, math.inf, index)  # type: ignore[return-value]
        return (status.slots.in_flight + status.slots.queued, status.ttft_seconds or 0.0, index)

    return [t for _, t in sorted(first, key=load)]


def describe_choice(target: Target, status: UpstreamStatus, candidates: int) -> str:
    """The reason a person reads in X-Foundry-Route-Reason ("local" alone when there was no choice to make)."""
    if target.reason != "local" or candidates == 1:
        return target.reason
    others = max(0, status.slots.in_flight - 1)
    return f"least busy of {candidates} upstreams with the model ({others} other request(s) in flight there)"

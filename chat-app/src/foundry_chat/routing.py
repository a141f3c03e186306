"""Which upstreams a request may go to, in the order to try them ("local first, cloud fallback").

Pure: takes the upstream statuses and the rules, returns targets. The chat code tries them in order and
moves to the next one only when a request fails before its first token.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundry_chat.settings import Route
from foundry_chat.upstreams import Upstream, UpstreamStatus


@dataclass(frozen=True)
class Target:
    upstream: Upstream
    model: str
    reason: str  # why this upstream: shown with the answer and logged


@dataclass(frozen=True)
class Plan:
    targets: tuple[Target, ...]
    # When there is nowhere to go: what is wrong, for people.
    problem: str = ""


def plan_route(
    statuses: list[UpstreamStatus],
    model: str | None,
    route: Route,
    prompt_tokens: int,
    cloud_prompt_tokens: int,
) -> Plan:
    local = [s for s in statuses if not s.upstream.cloud]
    cloud = next((s for s in statuses if s.upstream.cloud), None)
    cloud_target = (
        Target(cloud.upstream, cloud.upstream.fixed_model or "", "cloud")
        if cloud is not None and cloud.upstream.fixed_model
        else None
    )

    if route == "cloud":
        if cloud_target is None:
            problem = "this chat profile is routed to the cloud, but no cloud upstream is configured (CLOUD_BASE_URL)"
            return Plan((), problem)
        return Plan((cloud_target,))

    local_targets = tuple(Target(s.upstream, model, "local") for s in local if model and s.serves(model))
    if route == "auto" and cloud_target is not None:
        if cloud_prompt_tokens and prompt_tokens > cloud_prompt_tokens:
            reason = f"prompt of ~{prompt_tokens} tokens is over CLOUD_PROMPT_TOKENS={cloud_prompt_tokens}"
            return Plan((Target(cloud_target.upstream, cloud_target.model, reason), *local_targets))
        if not local_targets:
            return Plan((Target(cloud_target.upstream, cloud_target.model, "no local upstream serves the model"),))
        return Plan((*local_targets, cloud_target))

    if local_targets:
        return Plan(local_targets)
    return Plan((), local_problem(local, model))


def local_problem(local: list[UpstreamStatus], model: str | None) -> str:
    up = [s for s in local if s.state == "up"]
    if not up:
        details = "; ".join(f"{s.upstream.name}: {s.error or s.state}" for s in local)
        return f"no local Foundry Local upstream is reachable ({details})"
    loaded = sorted({m for s in up for m in s.models})
    if not model:
        return "no model is loaded on any upstream"
    return f"the model '{model}' is no longer loaded (loaded now: {', '.join(loaded) or 'none'})"

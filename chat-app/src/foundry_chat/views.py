"""What the chat decides and says, without Chainlit: the model to use, the answer's footer, the page when no
model is reachable, the download banner. ui.py shows these; the unit tests read them directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from foundry_chat.chat import Answer, sentence
from foundry_chat.router_watch import RouterStatus

# What the settings panel's model list holds when no model is loaded (Chainlit's Select needs a value).
NO_MODEL = "(none loaded)"
KEPT = "Your message was kept: send it again once that is done."
NO_ROUTER_MODEL = "the router serves no model yet: start Foundry Local (or the `foundry-local` service)"


def default_model(models: Sequence[str], preferred: str | None) -> str | None:
    """MODEL when the router serves it, else the first model it serves; MODEL (or nothing) when it serves none."""
    if preferred and preferred in models:
        return preferred
    return models[0] if models else preferred


def panel_model(chosen: object, models: Sequence[str], preferred: str | None) -> str:
    """The model the settings panel shows: the session's pick while it is served, else the default."""
    if isinstance(chosen, str) and chosen in models:
        return chosen
    return default_model(models, preferred) or NO_MODEL


@dataclass(frozen=True)
class ModelDecision:
    """The model to ask the router for; or, when nothing is sent, what to say and how to count the message."""

    model: str | None
    notice: str = ""
    outcome: Literal["rejected", "failed"] | None = None
    # The settings panel is out of date (a model it offers is gone): send it again.
    resend_settings: bool = False


def decide_model(chosen: str | None, status: RouterStatus, preferred: str | None) -> ModelDecision:
    """Which model this message goes to, from the session's pick and what the router serves now."""
    models = status.models
    if chosen == NO_MODEL:
        chosen = None
    if chosen is not None and chosen not in models and status.ready:
        # Picked earlier, gone now (unloaded, or its upstream went away): say so instead of guessing.
        return ModelDecision(
            None,
            notice=(
                f"The model **{chosen}** is no longer loaded on any upstream (loaded now: "
                f"{', '.join(models) or 'none'}). Pick another one in the chat settings, then send again."
            ),
            outcome="rejected",
            resend_settings=True,
        )
    # While the router serves nothing, the pick (or MODEL) still goes to it: its answer says what is down and why.
    model = chosen or default_model(models, preferred)
    if model is None:
        return ModelDecision(None, notice=could_not_answer(sentence(not_ready_reason(status))), outcome="failed")
    return ModelDecision(model)


def could_not_answer(error: str) -> str:
    return f"**Could not answer.** {error} {KEPT}"


def not_ready_reason(status: RouterStatus) -> str:
    """Why no model is reachable, as one clause: the router's own words, or why it could not be asked."""
    if not status.reachable:
        return status.message
    return (status.message or NO_ROUTER_MODEL).rstrip(". ")


def not_ready_message(status: RouterStatus) -> str:
    """The chat's /readyz message while it cannot answer."""
    return sentence(not_ready_reason(status))


def upstream_line(upstream: dict) -> str:
    where = upstream.get("url") or upstream.get("name") or "?"
    line = f"- `{where}`" + (" (cloud)" if upstream.get("cloud") else "") + f": {upstream.get('state', 'unknown')}"
    details = []
    service_state = upstream.get("service_state")
    if service_state and service_state != "ready":
        percent = upstream.get("download_percent")
        details.append(str(service_state) + (f" {percent:.0f}%" if isinstance(percent, int | float) else ""))
    if upstream.get("error"):
        details.append(str(upstream["error"]))
    return line + (f" ({'; '.join(details)})" if details else "")


def no_model_text(status: RouterStatus) -> str:
    """The notice a new session gets while no model is reachable: the router's view of each upstream."""
    if not status.reachable:
        return (
            "**No model is reachable right now.** The page works; answers will come once the router is back: "
            f"{not_ready_reason(status)}."
        )
    lines = ["**No model is reachable right now.** The page works; answers will come once an upstream is up:"]
    lines += [upstream_line(upstream) for upstream in status.upstreams]
    if status.message:
        lines.append(sentence(status.message.rstrip(". ")))
    else:
        lines.append("Start Foundry Local (or the `foundry-local` service), or set the router's `FOUNDRY_LOCAL_URLS`.")
    return "\n".join(lines)


def banner_text(status: RouterStatus) -> str:
    """The status message while an embedded service gets its model ready, and once that is over."""
    preparing = status.preparing
    if preparing is None:
        # Done: ready, or it failed (the upstreams' states say why).
        return "The model is ready: ask away." if status.ready else no_model_text(status)
    percent = f" {preparing.percent:.0f}%" if preparing.percent is not None else ""
    message = f" {preparing.message}" if preparing.message else ""
    return (
        f"**The embedded model is {preparing.state}{percent}** on `{preparing.upstream}`.{message} "
        "Chat works as soon as it is ready."
    )


def dropped_turns_text(dropped: int, context_tokens: int) -> str:
    return (
        f"_The conversation is longer than the context budget ({context_tokens} tokens): "
        f"the {dropped} oldest turn(s) are no longer sent to the model._"
    )


STOPPED_NOTE = "\n\n*— stopped; the rest of the answer was not generated.*"
STOPPED_WAITING_NOTE = "*— stopped while it waited for the model.*"


WAITING_PREFIX = "Waiting for the model:"


def waiting_text(ahead: int, wait_seconds: float | None) -> str:
    """The answer's place until its first token: the router's place in the queue and expected wait, in words."""
    place = "you are next" if ahead <= 0 else f"{ahead} ahead of you"
    wait = "" if wait_seconds is None else f", about {max(1, round(wait_seconds))} s"
    return f"{WAITING_PREFIX} {place}{wait}…"  # plain text: the page showed the asterisks of italics here


def footer(answer: Answer) -> str:
    """What follows the answer's text: where it ran (or what failed, and what to do)."""
    if answer.outcome == "failed":
        return could_not_answer(answer.error)
    where = answer.where
    if where is None:  # a router that names no upstream (not ours): still say which model
        parts = [f"{answer.model} via the router"]
    else:
        parts = [f"{where.model} on {where.upstream} ({where.kind})"]
        if where.reason and where.reason not in {"local", "cloud"}:
            parts.append(where.reason)
    if answer.output_tokens is not None:
        parts.append(f"{answer.output_tokens} tokens")
    parts.append(f"{answer.duration:.1f} s")
    if where is not None and where.failed_over:
        parts.append("after failing over from " + ", ".join(where.failed_over))
    note = f"\n\n*— {' · '.join(parts)}*"
    if answer.outcome == "interrupted":
        return f"\n\n**[interrupted]** {answer.error}" + note
    return note


def history_off_text(problem: str) -> str:
    return f"_History is off: {problem}. Answers still work; this conversation will not be kept._"


def not_saved_text(problem: str) -> str:
    return (
        f"_This conversation could not be saved completely: {problem}. Answers still work, and what was saved "
        "before is kept._"
    )

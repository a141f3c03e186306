"""Chainlit handlers: what a chat session does. Loaded by Chainlit from this file's path (mount_chainlit).

Per-session state lives in `cl.user_session` (history, settings); nothing here is shared between users
except the service (upstream registry, clients, metrics), which is safe to share.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import chainlit as cl
import structlog
from chainlit.input_widget import Select, Slider, TextInput

from foundry_chat import service as service_module
from foundry_chat.chat import Answer
from foundry_chat.choices import check_choices, max_tokens_bounds
from foundry_chat.coalesce import CoalescingStream
from foundry_chat.history import Turn, build_prompt, estimate_tokens
from foundry_chat.inputs import check_input
from foundry_chat.routing import plan_route
from foundry_chat.service import Service

log = structlog.get_logger("foundry_chat.ui")

CODE_PROMPT = "You are a careful programming assistant. Answer with short explanations and correct code."
BANNER_REFRESH_SECONDS = 2.0
NO_MODEL = "(none loaded)"
PROFILES = {
    "General": ("general", None),
    "Code": ("code", CODE_PROMPT),
}


def service() -> Service:
    return service_module.current()


@cl.set_chat_profiles
async def chat_profiles(user: cl.User | None = None, language: str | None = None) -> list[cl.ChatProfile]:
    routes = service().settings.profile_routes
    return [
        cl.ChatProfile(
            name="General",
            markdown_description=f"Everyday questions. Routing: **{routes['general']}**.",
            default=True,
        ),
        cl.ChatProfile(name="Code", markdown_description=f"Programming help. Routing: **{routes['code']}**."),
    ]


@cl.set_starters
async def starters(user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
    return [
        cl.Starter(label="Explain a concept", message="Explain what a context window is, in three sentences."),
        cl.Starter(label="Write code", message="Write a Python function that checks whether a string is a palindrome."),
        cl.Starter(label="Summarise", message="Summarise the benefits of running language models locally."),
        cl.Starter(label="Brainstorm", message="Give me five names for a private, local chat assistant."),
    ]


def profile() -> tuple[str, str | None]:
    return PROFILES.get(cl.user_session.get("chat_profile") or "General", PROFILES["General"])


def default_model(models: list[str]) -> str | None:
    preferred = service().settings.model
    if preferred and preferred in models:
        return preferred
    return models[0] if models else preferred


async def send_settings(chosen: str | None = None) -> dict:
    """Send the settings panel, with the models loaded now (the current pick kept when still there)."""
    svc = service()
    settings = svc.settings
    models = svc.registry.models()
    _, profile_prompt = profile()
    default_prompt = profile_prompt or settings.system_prompt
    # The session's values where they are usable, the defaults where not (a panel never starts out of range).
    current = check_choices(cl.user_session.get("chat_settings") or {}, settings, default_prompt)
    model = chosen if chosen in models else default_model(models)
    low, high = max_tokens_bounds(settings)
    widgets = [
        Select(
            id="model",
            label="Model (loaded on the upstreams now)",
            values=models or [model or NO_MODEL],
            initial_value=model or NO_MODEL,
        ),
        Slider(id="temperature", label="Temperature", min=0, max=2, step=0.1, initial=current.temperature),
        Slider(
            id="max_tokens", label="Max answer tokens", min=low, max=high, step=16, initial=current.max_tokens,
        ),
        TextInput(id="system_prompt", label="System prompt", multiline=True, initial=current.system_prompt),
    ]  # fmt: skip
    # Chainlit keeps the values in the session ("chat_settings") and updates them when the user changes them.
    return await cl.ChatSettings(widgets).send()


@cl.on_chat_start
async def start() -> None:
    svc = service()
    session_id = cl.context.session.id
    svc.sessions.add(session_id)
    cl.user_session.set("turns", [])
    registry = svc.registry
    if registry.downloading() is not None:
        cl.user_session.set("banner_task", asyncio.create_task(download_banner()))
    elif not registry.ready:
        await cl.Message(content=no_upstream_text(), author="Status").send()
    await send_settings()


def no_upstream_text() -> str:
    lines = ["**No model is reachable right now.** The page works; answers will come once an upstream is up:"]
    for status in service().registry.statuses:
        lines.append(f"- `{status.upstream.base_url}`: {status.state}" + (f" ({status.error})" if status.error else ""))
    lines.append("Start Foundry Local (or the `foundry-local` service), or set `FOUNDRY_LOCAL_URLS`.")
    return "\n".join(lines)


async def download_banner() -> None:
    """Keep a status message up to date while the embedded model downloads; it reads the registry only."""
    banner = cl.Message(content=banner_text(), author="Status")
    await banner.send()
    with contextlib.suppress(asyncio.CancelledError):
        while service().registry.downloading() is not None:
            await asyncio.sleep(BANNER_REFRESH_SECONDS)
            banner.content = banner_text()
            await banner.update()
        banner.content = "The model is ready: ask away."
        await banner.update()
        await send_settings(cl.user_session.get("chat_settings", {}).get("model"))


def banner_text() -> str:
    status = service().registry.downloading()
    if status is None:
        return "The model is ready."
    percent = f" {status.download_percent:.0f}%" if status.download_percent is not None else ""
    return (
        f"**The embedded model is {status.service_state}{percent}** on `{status.upstream.name}`. "
        f"{status.service_message} Chat works as soon as it is ready."
    )


@cl.on_chat_end
async def end() -> None:
    service().sessions.discard(cl.context.session.id)
    task = cl.user_session.get("banner_task")
    if task is not None:
        task.cancel()


@cl.on_message
async def on_message(message: cl.Message) -> None:
    request_id = uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id, session_id=cl.context.session.id)
    try:
        await answer_message(message)
    except asyncio.CancelledError:
        raise  # the stop button: already recorded and shown by answer_message
    except Exception:  # never a traceback in the chat
        log.exception("message_failed")
        service().metrics.messages.labels("failed").inc()
        await cl.Message(content="Something went wrong on our side; the details are in the service log.").send()
    finally:
        structlog.contextvars.unbind_contextvars("request_id", "session_id")


async def answer_message(message: cl.Message) -> None:
    svc = service()
    settings = svc.settings
    svc.sessions.add(cl.context.session.id)
    checked = check_input(message.content, settings.max_input_chars)
    removed = {
        "removed_control_characters": checked.removed_control_characters,
        "removed_invalid_characters": checked.removed_invalid_characters,
    }
    if checked.rejection:
        svc.metrics.messages.labels("rejected").inc()
        log.info("message_rejected", reason=checked.rejection, **removed)
        await cl.Message(content=checked.rejection, author="Status").send()
        return
    if any(removed.values()):
        log.info("message_characters_removed", **removed)

    route_name, profile_prompt = profile()
    choices = check_choices(cl.user_session.get("chat_settings"), settings, profile_prompt or settings.system_prompt)
    if choices.problems:
        svc.metrics.messages.labels("rejected").inc()
        # The names of the bad settings only: their values may be huge (or pasted secrets).
        log.info("message_rejected", reason="bad chat settings", settings=list(choices.bad))
        await cl.Message(content=choices.rejection, author="Status").send()
        return

    models = svc.registry.models()
    model = choices.model
    if model == NO_MODEL:
        model = None
    if model is None or (model not in models and not svc.registry.ready):
        model = default_model(models)
    elif model not in models and svc.registry.ready:
        # Picked earlier, gone now (unloaded, or its upstream went away): say so instead of guessing.
        svc.metrics.messages.labels("rejected").inc()
        await cl.Message(
            content=(
                f"The model **{model}** is no longer loaded on any upstream (loaded now: "
                f"{', '.join(models) or 'none'}). Pick another one in the chat settings, then send again."
            ),
            author="Status",
        ).send()
        await send_settings()
        return

    turns: list[Turn] = cl.user_session.get("turns") or []
    max_tokens = choices.max_tokens
    prompt = build_prompt(choices.system_prompt, turns, checked.text, max(settings.context_tokens - max_tokens, 64))
    plan = plan_route(
        svc.registry.statuses,
        model,
        settings.profile_routes[route_name],
        estimate_tokens(checked.text),
        settings.cloud_prompt_tokens,
    )
    if prompt.dropped_turns:
        await cl.Message(
            content=(
                f"_The conversation is longer than the context budget ({settings.context_tokens} tokens): "
                f"the {prompt.dropped_turns} oldest turn(s) are no longer sent to the model._"
            ),
            author="Status",
        ).send()

    reply = cl.Message(content="")
    stream = CoalescingStream(reply.stream_token, settings.stream_interval_ms / 1000)
    try:
        answer = await svc.chat.answer(plan, prompt.messages, choices.temperature, max_tokens, stream.push)
        await stream.close()
    except asyncio.CancelledError:
        # The stop button: keep what was said, in the chat and in the history.
        await stream.close()
        if reply.content:
            turns.append(Turn(checked.text, reply.content))
            cl.user_session.set("turns", turns)
            reply.content += "\n\n*— stopped; the rest of the answer was not generated.*"
            await reply.update()
        raise
    if answer.text:
        turns.append(Turn(checked.text, answer.text))
        cl.user_session.set("turns", turns)
    reply.content = answer.text + footer(answer)
    if reply.streaming:
        await reply.update()
    else:
        await reply.send()


def footer(answer: Answer) -> str:
    if answer.outcome == "failed":
        return f"**Could not answer.** {answer.error} Your message was kept: send it again once that is done."
    target = answer.target
    assert target is not None
    where = f"{target.model} on {target.upstream.name}" + (" (cloud)" if target.upstream.cloud else " (local)")
    parts = [where]
    if target.reason not in {"local", "cloud"}:
        parts.append(target.reason)
    if answer.output_tokens is not None:
        parts.append(f"{answer.output_tokens} tokens")
    parts.append(f"{answer.duration:.1f} s")
    if answer.failed_upstreams:
        parts.append("after failing over from " + ", ".join(answer.failed_upstreams))
    note = f"\n\n*— {' · '.join(parts)}*"
    if answer.outcome == "interrupted":
        return f"\n\n**[interrupted]** {answer.error}" + note
    return note

"""Chainlit handlers: what a chat session does. Loaded by Chainlit from this file's path (mount_chainlit).

Per-session state lives in `cl.user_session` (the turns, settings); Chainlit stores the messages through our data
layer (data_layer.py), and a resumed thread gets its turns back from them (transcript.py). Nothing here is shared
between users except the service (the router's status, the client, metrics, the history), which is safe to share.
What to decide and what to say is in views.py (no Chainlit there); these handlers only show it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec

import chainlit as cl
import structlog
from chainlit.input_widget import Select, Slider, TextInput
from chainlit.types import ThreadDict
from chainlit.utils import utc_now

from foundry_chat import service as service_module
from foundry_chat import views
from foundry_chat.chat import Outcome
from foundry_chat.choices import Request, check_choices, max_tokens_bounds
from foundry_chat.coalesce import CoalescingStream
from foundry_chat.inputs import check_input
from foundry_chat.profiles import DEFAULT_PROFILE, PROFILES, Profile, profile_by_label
from foundry_chat.prompt_window import Turn, build_prompt
from foundry_chat.service import Service
from foundry_chat.settings import TEMPERATURE_MAX, TEMPERATURE_MIN
from foundry_chat.transcript import IN_PROGRESS, answer_record, session_metadata, turns_from_steps

log = structlog.get_logger("foundry_chat.ui")
P = ParamSpec("P")


def service() -> Service:
    return service_module.current()


def finished_before_a_stop(handler: Callable[P, Awaitable[None]]) -> Callable[P, Awaitable[None]]:
    """A stopping chat (SIGTERM) lets this handler finish before it closes the browsers' connections."""

    @functools.wraps(handler)  # Chainlit reads the handler's parameters through __wrapped__
    async def run(*args: P.args, **kwargs: P.kwargs) -> None:
        with service().drain.work():
            await handler(*args, **kwargs)

    return run


@cl.set_chat_profiles
async def chat_profiles(user: cl.User | None = None, language: str | None = None) -> list[cl.ChatProfile]:
    routes = service().settings.profile_routes
    return [
        cl.ChatProfile(
            name=profile.label,
            markdown_description=f"{profile.description} Routing: **{routes[profile.key]}**.",
            default=profile is DEFAULT_PROFILE,
        )
        for profile in PROFILES.values()
    ]


@cl.set_starters
async def starters(user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
    return [
        cl.Starter(label="Explain a concept", message="Explain what a context window is, in three sentences."),
        cl.Starter(label="Write code", message="Write a Python function that checks whether a string is a palindrome."),
        cl.Starter(label="Summarise", message="Summarise the benefits of running language models locally."),
        cl.Starter(label="Brainstorm", message="Give me five names for a private, local chat assistant."),
    ]


def profile() -> Profile:
    return profile_by_label(cl.user_session.get("chat_profile"))


async def send_settings(chosen: object = None) -> dict:
    """Send the settings panel, with the models the router serves now (the current pick kept when still there)."""
    svc = service()
    settings = svc.settings
    models = list(svc.router.status.models)
    default_prompt = profile().system_prompt or settings.system_prompt
    # The session's values where they are usable, the defaults where not (a panel never starts out of range).
    current = check_choices(cl.user_session.get("chat_settings") or {}, settings, default_prompt)
    model = views.panel_model(chosen, models, settings.model)
    low, high = max_tokens_bounds(settings)
    widgets = [
        Select(id="model", label="Model (loaded on the upstreams now)", values=models or [model], initial_value=model),
        Slider(
            id="temperature", label="Temperature", min=TEMPERATURE_MIN, max=TEMPERATURE_MAX, step=0.1,
            initial=current.temperature,
        ),
        Slider(
            id="max_tokens", label="Max answer tokens", min=low, max=high, step=16, initial=current.max_tokens,
        ),
        TextInput(id="system_prompt", label="System prompt", multiline=True, initial=current.system_prompt),
    ]  # fmt: skip
    # Chainlit keeps the values in the session ("chat_settings") and updates them when the user changes them.
    return await cl.ChatSettings(widgets).send()


@cl.on_chat_start
@finished_before_a_stop
async def start() -> None:
    svc = service()
    svc.sessions.add(cl.context.session.id)
    cl.user_session.set("turns", [])
    if svc.history.problem:
        await status_message(views.history_off_text(svc.history.problem))
    status = svc.router.status
    if status.preparing is not None:
        cl.user_session.set("banner_task", asyncio.create_task(download_banner()))
    elif not status.ready:
        await cl.Message(content=views.no_model_text(status), author="Status").send()
    await send_settings()


@cl.on_chat_resume
@finished_before_a_stop
async def resume(thread: ThreadDict) -> None:
    """A past thread, opened from the sidebar: Chainlit shows its messages; the next answer sees its turns."""
    service().sessions.add(cl.context.session.id)
    turns = turns_from_steps(thread.get("steps") or [])
    cl.user_session.set("turns", turns)
    # Chainlit put the thread's stored chat_settings and chat_profile back into the session.
    chosen = cl.user_session.get("chat_settings") or {}
    cl.user_session.set("saved_session", session_metadata(cl.user_session.get("chat_profile"), chosen))
    log.info("thread_resumed", thread_id=thread.get("id"), turns=len(turns))
    await send_settings(chosen.get("model"))


async def download_banner() -> None:
    """Keep a status message up to date while an embedded model downloads; it reads the router's status only."""
    svc = service()
    text = views.banner_text(svc.router.status)
    banner = cl.Message(content=text, author="Status")
    await banner.send()
    with contextlib.suppress(asyncio.CancelledError):
        status = svc.router.status
        while status.preparing is not None:
            await asyncio.sleep(svc.settings.router_poll_seconds)
            status = svc.router.status
            if (new := views.banner_text(status)) != text:
                banner.content = text = new
                await banner.update()
        # Done: the settings panel gets the models served now.
        await send_settings((cl.user_session.get("chat_settings") or {}).get("model"))


@cl.on_chat_end
async def end() -> None:
    service().sessions.discard(cl.context.session.id)
    task = cl.user_session.get("banner_task")
    if task is not None:
        task.cancel()


@cl.on_message
@finished_before_a_stop
async def on_message(message: cl.Message) -> None:
    request_id = uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id, session_id=cl.context.session.id)
    outcome = "failed"
    try:
        outcome = await answer_message(message, request_id)
    except asyncio.CancelledError:
        outcome = "stopped"  # the stop button: the partial answer is already kept and shown by stream_reply
        raise
    except Exception:  # never a traceback in the chat
        log.exception("message_failed")
        await cl.Message(content="Something went wrong on our side; the details are in the service log.").send()
    finally:
        # Counted here only, once per message, whatever happened to it.
        service().metrics.messages.labels(outcome).inc()
        structlog.contextvars.unbind_contextvars("request_id", "session_id")


async def status_message(text: str) -> None:
    await cl.Message(content=text, author="Status").send()


async def answer_message(message: cl.Message, request_id: str) -> str:
    """Check the message and the settings, then answer it; returns the outcome (chat_messages_total's label)."""
    svc = service()
    settings = svc.settings
    svc.sessions.add(cl.context.session.id)
    checked = check_input(message.content, settings.max_input_chars)
    removed = {
        "removed_control_characters": checked.removed_control_characters,
        "removed_invalid_characters": checked.removed_invalid_characters,
    }
    if checked.rejection:
        log.info("message_rejected", reason=checked.rejection, **removed)
        await status_message(checked.rejection)
        return "rejected"
    if any(removed.values()):
        log.info("message_characters_removed", **removed)

    chosen_profile = profile()
    choices = check_choices(
        cl.user_session.get("chat_settings"), settings, chosen_profile.system_prompt or settings.system_prompt
    )
    if choices.problems:
        # The names of the bad settings only: their values may be huge (or pasted secrets).
        log.info("message_rejected", reason="bad chat settings", settings=list(choices.bad))
        await status_message(choices.rejection)
        return "rejected"

    status = svc.router.status
    if not status.ready:  # the last read may be a few seconds old: ask again before saying no
        status = await svc.router.refresh()
    decision = views.decide_model(choices.model, status, settings.model)
    if decision.model is None:
        log.info("message_not_sent", outcome=decision.outcome, reason=decision.notice)
        await status_message(decision.notice)
        if decision.resend_settings:
            await send_settings()
        return decision.outcome or "failed"
    route = settings.profile_routes[chosen_profile.key]
    outcome = await stream_reply(checked.text, Request(decision.model, route, choices, request_id))
    save_session()
    return outcome


async def stream_reply(question: str, request: Request) -> Outcome:
    """Send the question after the earlier turns that fit, stream the answer into a reply, keep the turn; returns
    what became of the answer."""
    svc = service()
    settings = svc.settings
    choices = request.choices
    turns: list[Turn] = cl.user_session.get("turns") or []
    prompt = build_prompt(choices.system_prompt, turns, question, max(settings.context_tokens - choices.max_tokens, 64))
    if prompt.dropped_turns:
        await status_message(views.dropped_turns_text(prompt.dropped_turns, settings.context_tokens))

    # Its time is set now, not when it is first saved: the stored thread keeps the order the user saw.
    reply = cl.Message(content="", created_at=utc_now(), metadata=answer_record(None, "", IN_PROGRESS))
    waiting = WaitingLine(reply)
    stream = CoalescingStream(waiting.stream_token, settings.stream_interval_ms / 1000)
    checkpoints = Checkpoints(reply, svc.history.active, settings.checkpoint_seconds)

    async def on_token(token: str) -> None:
        await stream.push(token)
        checkpoints.due()

    try:
        answer = await svc.chat.answer(
            request.model, request.route, prompt.messages, choices.temperature, choices.max_tokens, on_token,
            request.request_id, waiting.show,
        )  # fmt: skip
        await stream.close()
    except asyncio.CancelledError:
        # The stop button: keep what was said, in the chat and in the history.
        await stream.close()
        if waiting.shown:  # stopped in the queue: no answer began, and the waiting line goes
            reply.content, reply.metadata = views.STOPPED_WAITING_NOTE, answer_record(None, "", "stopped")
            await reply.update()
        elif reply.content:
            cl.user_session.set("turns", [*turns, Turn(question, reply.content)])
            reply.metadata = answer_record(None, reply.content, "stopped")
            reply.content += views.STOPPED_NOTE
            await reply.update()
        raise
    if answer.outcome in {"failed", "interrupted"}:
        svc.router.wake()  # something changed: the model list and /readyz catch up now, not at the next poll
    if answer.text:
        cl.user_session.set("turns", [*turns, Turn(question, answer.text)])
    reply.metadata = answer_record(answer, answer.text, answer.outcome)
    reply.content = answer.text + views.footer(answer)
    if reply.streaming:
        await reply.update()
    else:
        await reply.send()
    return answer.outcome


class WaitingLine:
    """The reply shows its place in the router's queue until the first token, which replaces it (Chainlit's
    `is_sequence` token: the message's whole text); a reply that never waited streams as it always did."""

    def __init__(self, reply: cl.Message) -> None:
        self.reply = reply
        self.shown = False
        self.text = ""

    async def show(self, ahead: int, wait_seconds: float | None) -> None:
        if (text := views.waiting_text(ahead, wait_seconds)) != self.text:  # a heartbeat repeats the same place
            self.text = text
            await self.reply.stream_token(text, is_sequence=True)
        self.shown = True

    async def stream_token(self, text: str) -> None:
        replace, self.shown = self.shown, False
        await self.reply.stream_token(text, is_sequence=replace)


class Checkpoints:
    """Saves a streaming answer every `interval` seconds, so that a crash loses at most that much of it.

    Each save is a write of the reply as it stands (marked interrupted until the final one replaces it), started
    as a task so that the stream never waits for the database; a save still running skips the next.
    """

    def __init__(self, reply: cl.Message, layer: object, interval: float) -> None:
        self.reply = reply
        self.layer = layer
        self.interval = interval
        self.next_at = 0.0
        self.task: asyncio.Task | None = None

    def due(self) -> None:
        if self.layer is None or not self.reply.content:
            return
        now = asyncio.get_running_loop().time()
        if now < self.next_at or (self.task is not None and not self.task.done()):
            return
        self.next_at = now + self.interval
        step = self.reply.to_dict()
        step["metadata"] = answer_record(None, self.reply.content, IN_PROGRESS)
        self.task = asyncio.create_task(self.layer.update_step(step))  # type: ignore[attr-defined]


def save_session() -> None:
    """Store the thread's profile and settings when they change (Chainlit itself only does it at disconnect, which a
    crash skips), and tell the user if this answer could not be stored. In the background: for the user the answer
    is done when it has streamed, not when the database has it."""
    layer = service().history.active
    thread_id = cl.context.session.thread_id
    if layer is None or not thread_id:
        return
    wanted = session_metadata(cl.user_session.get("chat_profile"), cl.user_session.get("chat_settings"))
    if wanted != cl.user_session.get("saved_session"):
        cl.user_session.set("saved_session", wanted)
        background(layer.update_thread(thread_id, metadata=wanted))
    background(report_unsaved(layer, thread_id))


async def report_unsaved(layer: Any, thread_id: str) -> None:
    await layer.flush()
    if problem := layer.take_failure(thread_id):
        await status_message(views.not_saved_text(problem))


_background: set[asyncio.Task] = set()


def background(work: Coroutine[Any, Any, Any]) -> None:
    """Run `work` in this session's context, keeping a reference until it ends (the loop keeps only a weak one)."""
    task = asyncio.create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)

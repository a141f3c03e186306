"""A visible place in the router's queue, as the chat's user sees it: "Waiting for the model: …" in the answer's
message until its first token, which replaces it. A real router (UPSTREAM_MAX_CONCURRENCY=1) in front of a paced
upstream; a stream the test holds open keeps the one slot busy until the test closes it, so the chat's request
waits in the queue for as long as the test needs to see it there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from chat_support import (
    ONE_AT_A_TIME,
    PACED_MODEL,
    ChainlitClient,
    Holder,
    PacedUpstream,
    connected,
    running_chat,
    start_paced_upstream,
)

from foundry_chat import views
from foundry_chat.chat import ChatService
from foundry_chat.metrics import ChatMetrics
from tests.support.process import wait_until
from tests.support.router import RouterProcess, start_router


def user_step(text: str) -> dict:
    """A message as the page sends it."""
    return {"id": str(uuid.uuid4()), "threadId": "", "name": "User", "type": "user_message", "output": text,
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z")}  # fmt: skip


@pytest.fixture
def paced() -> Iterator[PacedUpstream]:
    upstream = start_paced_upstream(first_token_ms=20, token_interval_ms=5)
    yield upstream
    upstream.stop()


@pytest.fixture
def router(paced: PacedUpstream, tmp_path: Path) -> Iterator[RouterProcess]:
    process = start_router(tmp_path / "router", [paced.url], **ONE_AT_A_TIME)
    try:
        process.wait_ready(model=PACED_MODEL)
        yield process
    finally:
        process.stop()


@pytest.mark.unit
@pytest.mark.parametrize(
    ("ahead", "wait", "text"),
    [(0, None, "Waiting for the model: you are next…"), (0, 0.2, "Waiting for the model: you are next, about 1 s…"),
     (3, 12.4, "Waiting for the model: 3 ahead of you, about 12 s…")],
)  # fmt: skip
def test_the_waiting_line_in_words(ahead: int, wait: float | None, text: str) -> None:
    assert views.waiting_text(ahead, wait) == text


@pytest.mark.integration
def test_the_service_hears_its_place_then_reads_the_answer_and_where_it_ran(router: RouterProcess) -> None:
    async def scenario() -> tuple[list[tuple[int, float | None]], object]:
        holder = Holder(router.base_url)
        places: list[tuple[int, float | None]] = []
        tokens: list[str] = []

        async def on_queue(ahead: int, wait: float | None) -> None:
            places.append((ahead, wait))
            holder.close()  # the slot goes to this request now that it has been told its place

        async def on_token(token: str) -> None:
            tokens.append(token)

        service = ChatService(router.base_url, "unused", ChatMetrics(), timeout=30)
        try:
            answer = await service.answer(PACED_MODEL, "auto", [{"role": "user", "content": "Hi"}], 0.0, 4, on_token,
                                          on_queue=on_queue)  # fmt: skip
        finally:
            holder.close()
            await service.close()
        assert "".join(tokens) == answer.text
        return places, answer

    places, answer = asyncio.run(scenario())
    assert [ahead for ahead, _ in places] == [0]
    assert answer.outcome == "ok" and answer.text == " tok0 tok1 tok2 tok3" and answer.queue_ahead == 0
    # Its response started before it had an upstream: where it ran came in the stream.
    assert answer.where is not None and answer.where.upstream == router.readyz()["upstreams"][0]["name"]


@pytest.mark.integration
def test_the_chat_shows_the_waiting_line_then_the_answer_in_its_place(paced: PacedUpstream, tmp_path: Path) -> None:
    with running_chat(tmp_path, [paced.url], **ONE_AT_A_TIME, MAX_TOKENS="4") as chat:
        assert chat.router is not None
        holder = Holder(chat.router.base_url)

        async def scenario():
            client = ChainlitClient(chat.url)
            await client.connect()

            async def waiting_shown() -> None:
                holder.close()  # the waiting line is on the page: now the slot goes to it

            try:
                waited = await client.ask("Hi", on_first_token=waiting_shown)
                return waited, await client.ask("Again")  # the slot is free now: no wait, no waiting line
            finally:
                await client.close()

        try:
            reply, unqueued = asyncio.run(scenario())
        finally:
            holder.close()
    (straight,) = unqueued.named("stream_start")
    assert straight["output"] == " tok0" and not any(d.get("isSequence") for d in unqueued.named("stream_token"))
    (started,) = reply.named("stream_start")
    assert started["output"] == views.waiting_text(0, None) or started["output"].startswith(
        "Waiting for the model: you are next, about "
    ), started
    replaced = [d for d in reply.named("stream_token") if d.get("isSequence")]
    assert replaced and replaced[0]["token"] == " tok0", replaced  # the first token replaces the waiting line
    final = reply.final_text()
    assert final.startswith(" tok0 tok1 tok2 tok3"), final
    assert "Waiting" not in final and f"on {paced.url.removeprefix('http://').removesuffix('/v1')} (local)" in final


@pytest.mark.integration
def test_stopped_while_it_waits_the_line_goes_and_the_queue_empties(paced: PacedUpstream, tmp_path: Path) -> None:
    with running_chat(tmp_path, [paced.url], **ONE_AT_A_TIME, MAX_TOKENS="4") as chat:
        router = chat.router
        assert router is not None
        holder = Holder(router.base_url)
        try:

            async def scenario() -> list[dict]:
                async with connected(chat.url) as client:
                    await client.sio.emit("client_message", {"message": user_step("Hi"), "fileReferences": []})
                    started = await client.next_event("stream_start")  # the waiting line
                    assert str(started["output"]).startswith("Waiting for the model"), started  # type: ignore[index]
                    await client.stop_task()
                    updates = []
                    while (event := await client.next_any({"update_message", "task_end"}))[0] != "task_end":
                        updates.append(event[1])
                    return updates

            updates = asyncio.run(scenario())
            # Its request left the router's queue (the holder still has the slot).
            wait_until(lambda: router.metric("router_upstream_queue_length") == 0, 10, "the queue to empty")
            assert router.metric("router_upstream_in_flight") == 1
            assert chat.metric('chat_messages_total{outcome="stopped"}') == 1
        finally:
            holder.close()
    answers = [u for u in updates if u.get("type") == "assistant_message"]
    assert answers and answers[-1]["output"] == views.STOPPED_WAITING_NOTE, updates

"""Conversations that last, through the chat's real routes (Socket.IO and REST), on SQLite and on PostgreSQL.

Each backend gets one chat process (with a router and a paced upstream) and three accounts; the tests read the
threads back through Chainlit's REST API, as the sidebar does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import socketio
from chat_support import ChainlitClient, ChatProcess, PacedUpstream, connected, login, start_chat

from foundry_chat.transcript import IN_PROGRESS
from tests.support.postgres import PostgresServer
from tests.support.process import log_events, wait_until

pytestmark = pytest.mark.integration

PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password"}
SESSIONS = 32
TURNS = 5


@dataclass
class Chat:
    process: ChatProcess
    tokens: dict[str, str]

    def http(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.process.url, cookies={"access_token": self.tokens[user]}, timeout=10)

    def client(self, user: str, thread_id: str = "") -> ChainlitClient:
        return ChainlitClient(self.process.url, cookies={"access_token": self.tokens[user]}, thread_id=thread_id)

    def thread(self, user: str, thread_id: str, answers: int = 0) -> dict:
        """The thread as the sidebar opens it, once it holds `answers` finished answers (the history stores them
        a few milliseconds after they have streamed)."""
        found: dict = {}

        def stored() -> bool:
            with self.http(user) as http:
                response = http.get(f"/project/thread/{thread_id}")
            assert response.status_code in {200, 404}, response.text
            found["thread"] = response.json() if response.status_code == 200 else None
            done = [a for a in answers_of(found["thread"] or {}) if a["metadata"]["answer"]["outcome"] != IN_PROGRESS]
            return found["thread"] is not None and len(done) >= answers

        wait_until(stored, 15, f"{answers} answers stored in thread {thread_id}", interval=0.05)
        return found["thread"]

    def threads(self, user: str) -> list[dict]:
        with self.http(user) as http:
            response = http.post("/project/threads", json={"pagination": {"first": 100}, "filter": {}})
        assert response.status_code == 200, response.text
        return response.json()["data"]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def chat(
    request: pytest.FixtureRequest, paced: PacedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chat]:
    env = {
        "CHAT_USERS": ",".join(f"{user}:{password}" for user, password in PASSWORDS.items()),
        "LOG_PROMPTS": "true",
        "UPSTREAM_MAX_CONCURRENCY": "64",
        "CHECKPOINT_SECONDS": "0.2",
    }
    if request.param == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        env["DATABASE_URL"] = server.create_database(f"threads_{uuid.uuid4().hex[:12]}")
    process = start_chat(tmp_path_factory.mktemp(f"threads-{request.param}"), [paced.url], **env)
    try:
        process.wait_healthy()
        tokens = {}
        for user, password in PASSWORDS.items():
            response = login(process.url, user, password)
            assert response.status_code == 200, response.text
            tokens[user] = response.cookies["access_token"]
        yield Chat(process, tokens)
    finally:
        process.stop()


def messages(thread: dict) -> list[tuple[str, str]]:
    """(type, text) of the questions and the answers (status notices left out), in the stored order."""
    return [
        (step["type"], step["output"])
        for step in thread["steps"]
        if step["type"] == "user_message" or (step["type"] == "assistant_message" and "answer" in step["metadata"])
    ]


def answers_of(thread: dict) -> list[dict]:
    return [step for step in thread.get("steps", []) if "answer" in (step.get("metadata") or {})]


async def a_conversation(chat: Chat, user: str, questions: list[str]) -> ChainlitClient:
    async with connected(chat.client(user)) as client:
        for question in questions:
            reply = await client.ask(question)
            assert reply.streamed_text, reply.texts()
    return client


def test_32_sessions_of_5_turns_at_once_store_each_turn_once_in_order(chat: Chat) -> None:
    async def everyone() -> list[ChainlitClient]:
        return await asyncio.gather(
            *(a_conversation(chat, "carol", [f"s{n} q{t}" for t in range(TURNS)]) for n in range(SESSIONS))
        )

    clients = asyncio.run(everyone())
    listed = {thread["id"] for thread in chat.threads("carol")}
    assert {client.thread_id for client in clients} <= listed
    for session, client in enumerate(clients):
        thread = chat.thread("carol", client.thread_id, answers=TURNS)
        stored = messages(thread)
        assert [text for kind, text in stored if kind == "user_message"] == [f"s{session} q{t}" for t in range(TURNS)]
        assert [kind for kind, _ in stored] == ["user_message", "assistant_message"] * TURNS, "each once, in order"
        assert len({step["id"] for step in thread["steps"]}) == len(thread["steps"])
        for answer in answers_of(thread):
            record = answer["metadata"]["answer"]
            assert record["outcome"] == "ok" and record["model"] and record["upstream"]
            assert record["output_tokens"] and record["duration_ms"] > 0
            assert answer["output"].startswith(" tok0") and "tokens ·" in answer["output"]


def test_a_resumed_thread_shows_its_messages_keeps_its_settings_and_the_model_sees_its_turns(chat: Chat) -> None:
    async def first_visit() -> str:
        async with connected(chat.client("alice")) as client:
            await client.change_settings({"temperature": 0.3, "system_prompt": "Be brief."})
            await client.ask("my name is Ada")
            await client.ask("what is 2+2?")
        return client.thread_id

    async def second_visit(thread_id: str) -> tuple[dict, list, ChainlitClient]:
        async with connected(chat.client("alice", thread_id=thread_id)) as client:
            resumed = await client.next_event("resume_thread")
            await client.ask("and what is my name?")
        return resumed, client.started.named("chat_settings"), client

    thread_id = asyncio.run(first_visit())
    chat.thread("alice", thread_id, answers=2)  # what a reload right after the answer finds
    resumed, panels, client = asyncio.run(second_visit(thread_id))
    assert client.thread_id == thread_id, "the next message continues the same thread"
    assert [text for kind, text in messages(resumed) if kind == "user_message"] == ["my name is Ada", "what is 2+2?"]
    widgets = {widget["id"]: widget["initial"] for widget in panels[-1]}
    assert widgets["temperature"] == 0.3 and widgets["system_prompt"] == "Be brief."
    prompts = [e["messages"] for e in log_events(chat.process.log_path) if e.get("event") == "prompt"]
    last = next(p for p in reversed(prompts) if p[-1]["content"] == "and what is my name?")
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert last[0]["content"] == "Be brief."
    assert [m["content"] for m in last if m["role"] == "user"] == [
        "my name is Ada",
        "what is 2+2?",
        last[-1]["content"],
    ]
    assert all(not m["content"].count("tokens ·") for m in last), "the model gets its words, not the footers"
    stored = messages(chat.thread("alice", thread_id, answers=3))
    assert [kind for kind, _ in stored] == ["user_message", "assistant_message"] * 3


def test_rename_and_delete_a_thread(chat: Chat) -> None:
    thread_id = asyncio.run(a_conversation(chat, "alice", ["rename me"])).thread_id
    chat.thread("alice", thread_id, answers=1)
    with chat.http("alice") as http:
        assert http.put("/project/thread", json={"threadId": thread_id, "name": "Renamed"}).status_code == 200
        assert chat.thread("alice", thread_id)["name"] == "Renamed"
        assert http.request("DELETE", "/project/thread", json={"threadId": thread_id}).status_code == 200
        assert http.get(f"/project/thread/{thread_id}").status_code == 404
    assert thread_id not in {thread["id"] for thread in chat.threads("alice")}


def test_feedback_is_stored_with_the_answer_and_counted(chat: Chat) -> None:
    thread_id = asyncio.run(a_conversation(chat, "alice", ["rate me"])).thread_id
    (answer,) = answers_of(chat.thread("alice", thread_id, answers=1))
    ups, downs = (
        chat.process.metric("chat_feedback_total", rating="up"),
        chat.process.metric("chat_feedback_total", rating="down"),
    )
    with chat.http("alice") as http:
        rating = {"forId": answer["id"], "value": 1, "comment": "clear and short"}
        response = http.put("/feedback", json={"feedback": rating, "sessionId": str(uuid.uuid4())})
        assert response.status_code == 200, response.text
        feedback_id = response.json()["feedbackId"]
        (stored,) = answers_of(chat.thread("alice", thread_id))
        assert stored["feedback"] == {
            "id": feedback_id,
            "forId": answer["id"],
            "value": 1,
            "comment": "clear and short",
        }
        again = http.put("/feedback", json={"feedback": {**rating, "value": 0, "comment": None}, "sessionId": "x"})
        assert again.json()["feedbackId"] == feedback_id, "one rating per answer: the second replaces the first"
        assert chat.process.metric("chat_feedback_total", rating="up") == ups + 1
        assert chat.process.metric("chat_feedback_total", rating="down") == downs + 1
        too_long = http.put("/feedback", json={"feedback": {**rating, "comment": "x" * 5000}, "sessionId": "x"})
        assert too_long.status_code == 413 and "the limit is 4000" in too_long.json()["detail"]
        assert http.request("DELETE", "/feedback", json={"feedbackId": feedback_id}).status_code == 200
    (cleared,) = answers_of(chat.thread("alice", thread_id))
    assert cleared["feedback"] is None


def test_no_user_can_read_resume_rename_delete_or_rate_another_users_thread(chat: Chat) -> None:
    client = asyncio.run(a_conversation(chat, "alice", ["alice's secret"]))
    thread_id = client.thread_id
    (answer,) = answers_of(chat.thread("alice", thread_id, answers=1))
    with chat.http("alice") as alice:
        rated = alice.put("/feedback", json={"feedback": {"forId": answer["id"], "value": 1}, "sessionId": "x"})
        feedback_id = rated.json()["feedbackId"]
    with chat.http("bob") as bob:
        assert bob.get(f"/project/thread/{thread_id}").status_code == 401
        assert bob.put("/project/thread", json={"threadId": thread_id, "name": "mine now"}).status_code == 401
        assert bob.request("DELETE", "/project/thread", json={"threadId": thread_id}).status_code == 401
        stolen = bob.put("/feedback", json={"feedback": {"forId": answer["id"], "value": 0}, "sessionId": "x"})
        assert stolen.status_code == 404 and "not in your conversations" in stolen.json()["detail"]
        assert bob.request("DELETE", "/feedback", json={"feedbackId": feedback_id}).status_code == 404
        assert thread_id not in {thread["id"] for thread in chat.threads("bob")}
        missing = bob.get(f"/project/thread/{uuid.uuid4()}")
        assert missing.status_code == 404

    async def bob_resumes() -> None:
        intruder = chat.client("bob", thread_id=thread_id)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await intruder.connect()

    asyncio.run(bob_resumes())
    thread = chat.thread("alice", thread_id)
    assert thread["name"] == "alice's secret" and answers_of(thread)[0]["feedback"]["value"] == 1, "nothing changed"


def test_resuming_a_thread_that_does_not_exist_starts_a_new_chat(chat: Chat) -> None:
    async def scenario() -> str:
        async with connected(chat.client("alice", thread_id=str(uuid.uuid4()))) as client:
            started = client.started
            assert started.named("chat_settings"), "a fresh chat starts"
            return [event for event, _ in started.events]

    assert "resume_thread_error" in asyncio.run(scenario())


def test_a_10_mb_message_is_refused_in_words_and_nothing_is_lost(chat: Chat) -> None:
    async def scenario() -> tuple[str, list[str]]:
        async with connected(chat.client("alice")) as client:
            await client.ask("a short question first")
            reply = await client.ask("x" * 10_000_000)
            after = await client.ask("still there?")
        return client.thread_id, [*reply.texts(), after.streamed_text]

    thread_id, texts = asyncio.run(scenario())
    assert any("too long" in text.lower() or "characters" in text for text in texts[:-1]), texts[:3]
    assert texts[-1], "the chat still answers"
    stored = messages(chat.thread("alice", thread_id, answers=2))
    questions = [text for kind, text in stored if kind == "user_message"]
    assert questions[0] == "a short question first" and questions[-1] == "still there?"
    assert len(questions[1]) == 100_000, "the refused message is kept only in part"
    assert chat.process.get("/healthz").status_code == 200

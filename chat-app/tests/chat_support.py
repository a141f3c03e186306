"""The chat service (behind it, a router) as real local processes, and a Socket.IO client for Chainlit.

Chainlit 2.x protocol (chainlit/socket.py and its web client): connect to `/ws/socket.io` with
`auth={sessionId, clientType, threadId, userEnv, chatProfile}`, emit `connection_successful` (which runs
on_chat_start), send `client_message` `{message: step, fileReferences}`; the server answers with
`task_start`, `new_message` / `stream_start` / `stream_token` / `update_message`, then `task_end`.
With a login (CHAT_PASSWORD), `POST /login` (form fields username, password) sets the `access_token` cookie,
which the Socket.IO connection must carry: `login()` gets it, `ChainlitClient(cookies=...)` sends it.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import socketio

from foundry_chat.views import WAITING_PREFIX
from tests.support.chat import ChatProcess, running_chat, start_chat
from tests.support.paced import PACED_MODEL, PacedUpstream, start_paced_upstream
from tests.support.process import GatewayProcess

__all__ = [
    "ONE_AT_A_TIME",
    "PACED_MODEL",
    "ChainlitClient",
    "ChatProcess",
    "Holder",
    "PacedUpstream",
    "ask_once",
    "chat_in_front_of",
    "connected",
    "converse",
    "login",
    "running_chat",
    "start_chat",
    "start_paced_upstream",
]

ANSWER_TIMEOUT = 60
STREAM_EVENTS = {"stream_start", "stream_token"}


@dataclass
class Reply:
    """Everything the server sent while answering one message."""

    events: list[tuple[str, object]] = field(default_factory=list)
    # When each event arrived (time.perf_counter), and when the question was sent: for the benchmark.
    times: list[float] = field(default_factory=list)
    sent_at: float = 0.0

    def named(self, name: str) -> list:
        return [data for event, data in self.events if event == name]

    @property
    def streamed_text(self) -> str:
        """The answer as it was streamed: stream_start carries the first text, stream_token the rest; a token marked
        isSequence replaces the text (the answer's first token after the waiting line, as the page shows it)."""
        text = ""
        for event, data in self.events:
            if event == "stream_start":
                text += data["output"]  # type: ignore[index]
            elif event == "stream_token":
                text = data["token"] if data.get("isSequence") else text + data["token"]  # type: ignore[union-attr,index]
        return text

    @property
    def usage_tokens(self) -> int:
        """The output token count the answer's footer reports (from the upstream's usage)."""
        found = re.search(r" · (\d+) tokens · ", self.final_text())
        return int(found.group(1)) if found else 0

    @property
    def streamed_ids(self) -> set[str]:
        return {d["id"] for d in self.named("stream_start")}

    def final_text(self) -> str:
        """The last content shown for the assistant's answer (after streaming ended)."""
        steps = [d for d in self.named("new_message") + self.named("update_message") if isinstance(d, dict)]
        answers = [s for s in steps if s.get("type") == "assistant_message"]
        return answers[-1]["output"] if answers else ""

    def token_times(self) -> list[float]:
        """Arrival times of the answer's tokens: the first comes with stream_start, the rest as stream_token (the
        waiting line shown while the router queues the request is not a token)."""
        return [
            t
            for (event, data), t in zip(self.events, self.times, strict=True)
            if event in STREAM_EVENTS and not waiting_line(data)
        ]

    def texts(self) -> list[str]:
        return [d.get("output", "") for d in self.named("new_message") + self.named("update_message")]

    def answered_in_full_by(self, model: str) -> bool:
        """Streamed, with the footer naming `model`, and neither cut off nor refused: what load tests count."""
        final = self.final_text()
        cut_or_refused = "[interrupted]" in final or "Could not answer" in final
        return bool(self.token_times()) and model in final and not cut_or_refused

    def ttft(self) -> float:
        """Seconds from sending the question to its first token."""
        return self.token_times()[0] - self.sent_at


def waiting_line(data: object) -> bool:
    """A stream event that shows the place in the router's queue (views.waiting_text), not the answer."""
    text = data.get("output", data.get("token", "")) if isinstance(data, dict) else ""
    return isinstance(text, str) and text.startswith(WAITING_PREFIX)


@contextmanager
def chat_in_front_of(gateway: GatewayProcess, tmp: Path) -> Iterator[ChatProcess]:
    """The chat service (and its router) in front of `gateway`, healthy; prompts are logged so that tests can see
    what went upstream; messages are limited to 500 characters. Stopped at the end."""
    with running_chat(tmp, [f"{gateway.url}/v1"], LOG_PROMPTS="true", MAX_INPUT_CHARS="500") as service:
        yield service


def login(url: str, username: str, password: str) -> httpx.Response:
    """What Chainlit's login page does; on success the response sets the `access_token` cookie."""
    return httpx.post(f"{url}/login", data={"username": username, "password": password}, timeout=10)


async def browser_cookies(url: str) -> dict[str, str]:
    """What the login page does without a password (the history's single local user): `POST /auth/header`."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        config = (await http.get("/auth/config")).json()
        if not (config.get("requireLogin") and config.get("headerAuth")):
            return {}
        response = await http.post("/auth/header")
        response.raise_for_status()
        return {"access_token": response.cookies["access_token"]}


class ChainlitClient:
    """One browser tab: a Chainlit session over a real Socket.IO connection."""

    def __init__(
        self,
        url: str,
        chat_profile: str = "",
        cookies: dict[str, str] | None = None,
        thread_id: str = "",
        origin: str | None = None,
    ) -> None:
        self.url = url
        self.session_id = str(uuid.uuid4())
        self.chat_profile = chat_profile
        # Sent with the connection as a browser would (e.g. the login's access_token). None: log in as the
        # page would (the local user, when the chat asks for no password).
        self.cookies = None if cookies is None else dict(cookies)
        # A past thread to resume (the sidebar's link), else the thread this session's first message starts.
        self.thread_id = thread_id
        # The page's origin, as a browser sends it (None: none, as a script sends).
        self.origin = origin
        # No cap on what the server sends, like a browser (aiohttp's default is 4 MB: Chainlit echoes a message in
        # its on_message step, so a long message would otherwise cut this client's connection, not the server's).
        self.sio = socketio.AsyncClient(reconnection=False, websocket_extra_options={"max_msg_size": 0})
        self.events: asyncio.Queue[tuple[str, object, float]] = asyncio.Queue()
        self.settings: list = []
        # What the server sent at start (connect's reply), once connected.
        self.started: Reply | None = None

        @self.sio.on("*")
        async def any_event(event: str, data: object = None) -> None:
            await self.events.put((event, data, time.perf_counter()))

    async def connect(self) -> Reply:
        """Connect and run on_chat_start; returns what the server sent at start (settings, notices).

        A refused connection (e.g. no valid login) raises socketio.exceptions.ConnectionError.
        """
        if self.cookies is None:
            self.cookies = await browser_cookies(self.url)
        cookie = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        headers = {"Cookie": cookie} if cookie else {}
        if self.origin:
            headers["Origin"] = self.origin
        await self.sio.connect(
            self.url,
            headers=headers,
            socketio_path="/ws/socket.io",
            transports=["websocket"],
            auth={
                "sessionId": self.session_id,
                "clientType": "webapp",
                "threadId": self.thread_id,
                "userEnv": "{}",
                "chatProfile": self.chat_profile,
            },
            wait_timeout=10,
        )
        await self.sio.emit("connection_successful")
        reply = Reply()
        # on_chat_start always ends by sending the chat settings.
        await self._collect(reply, until="chat_settings")
        self.started = reply
        return reply

    async def ask(self, text: str, on_first_token: Callable[[], Awaitable[None]] | None = None) -> Reply:
        """Send a user message and collect the server's events until the task ends. `on_first_token` is awaited
        when the answer's first token has arrived (the e2e fault tests inject their fault then)."""
        step = {
            "id": str(uuid.uuid4()),
            "threadId": "",
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        reply = Reply(sent_at=time.perf_counter())
        await self.sio.emit("client_message", {"message": step, "fileReferences": []})
        await self._collect(reply, until="task_end", after="task_start", on_first_token=on_first_token)
        for started in reply.named("first_interaction"):
            self.thread_id = started["thread_id"]
        return reply

    async def change_settings(self, settings: dict) -> None:
        """What the settings panel sends when the user confirms it (any JSON, as a client may send)."""
        await self.sio.emit("chat_settings_change", settings)

    async def stop_task(self) -> None:
        await self.sio.emit("stop")

    async def _collect(
        self,
        reply: Reply,
        until: str,
        after: str | None = None,
        on_first_token: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        started = after is None

        async def run() -> None:
            nonlocal started, on_first_token
            while True:
                event, data, at = await self.events.get()
                reply.events.append((event, data))
                reply.times.append(at)
                if event == "stream_start" and on_first_token is not None:
                    callback, on_first_token = on_first_token, None
                    await callback()
                if event == after:
                    started = True
                elif started and event == until:
                    return

        await asyncio.wait_for(run(), ANSWER_TIMEOUT)

    async def next_event(self, name: str) -> object:
        async def run() -> object:
            while True:
                event, data, _ = await self.events.get()
                if event == name:
                    return data

        return await asyncio.wait_for(run(), ANSWER_TIMEOUT)

    async def next_any(self, names: set[str]) -> tuple[str, object]:
        async def run() -> tuple[str, object]:
            while True:
                event, data, _ = await self.events.get()
                if event in names:
                    return event, data

        return await asyncio.wait_for(run(), ANSWER_TIMEOUT)

    async def close(self) -> None:
        await self.sio.disconnect()


@asynccontextmanager
async def connected(target: str | ChainlitClient, **options) -> AsyncIterator[ChainlitClient]:
    """One browser tab for the block: connect (on_chat_start; what it sent is `client.started`), yield the
    client, disconnect on the way out. `target` is the chat's URL (`options` go to ChainlitClient: cookies,
    thread_id, chat_profile, origin) or a client not yet connected. A refused connection raises, as
    ChainlitClient.connect does, with nothing to close."""
    if isinstance(target, ChainlitClient) and options:
        raise TypeError("options are for a new client; this one is already made")
    client = target if isinstance(target, ChainlitClient) else ChainlitClient(target, **options)
    await client.connect()
    try:
        yield client
    finally:
        await client.close()


async def converse(
    url: str,
    text: str,
    settings: dict | None = None,
    on_first_token: Callable[[], Awaitable[None]] | None = None,
) -> Reply:
    """One browser tab asks one question: connect, change the chat settings when given, ask, disconnect."""
    async with connected(url) as client:
        if settings is not None:
            await client.change_settings(settings)
        return await client.ask(text, on_first_token=on_first_token)


def ask_once(url: str, text: str, settings: dict | None = None) -> Reply:
    return asyncio.run(converse(url, text, settings))


# A router that takes one request at a time: with a Holder, the next request waits in its queue.
ONE_AT_A_TIME = {"UPSTREAM_MAX_CONCURRENCY": "1", "UPSTREAM_QUEUE_SIZE": "4"}


class Holder:
    """A stream through the router that has the upstream's one slot (its first token is in) until `close`."""

    def __init__(self, router_base_url: str) -> None:
        body = {"model": PACED_MODEL, "messages": [{"role": "user", "content": "hold"}], "max_tokens": 100_000,
                "stream": True}  # fmt: skip
        self.client = httpx.Client(timeout=30)
        request = self.client.build_request("POST", f"{router_base_url}/chat/completions", json=body)
        self.response = self.client.send(request, stream=True)
        assert self.response.status_code == 200
        self.lines = self.response.iter_lines()  # kept: a reader dropped half-way closes the response
        assert next(line for line in self.lines if line).startswith("data:")

    def close(self) -> None:
        self.response.close()
        self.client.close()

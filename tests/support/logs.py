"""The logs of what the tests started, attached to the report of a test that fails.

Each process helper (the gateway, the router, the chat, PostgreSQL) and each Compose stack registers itself when
it is made; the root conftest's report hook adds the end of each log still around (a fixture's, or a test's own,
kept alive by the failure's traceback) as a section of the failure, so a red CI run shows what the services said.
"""

from __future__ import annotations

import weakref
from typing import Protocol

TAIL_LINES = 60


class Logged(Protocol):
    def log(self) -> str: ...


# By id: the helpers are dataclasses, which are not hashable; an entry leaves with its object.
_started: weakref.WeakValueDictionary[int, Logged] = weakref.WeakValueDictionary()


def register(source: Logged) -> None:
    _started[id(source)] = source


def tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def sections() -> list[tuple[str, str]]:
    """(title, the end of its log) of everything started that is still around."""
    found = []
    for source in list(_started.values()):
        try:
            text = source.log()
        except Exception as exc:  # a log that cannot be read says so rather than hiding the failure
            text = f"(could not read the log: {exc})"
        where = getattr(source, "log_path", None) or getattr(source, "project", "")
        found.append((f"log of {type(source).__name__} {where}", tail(text)))
    return found

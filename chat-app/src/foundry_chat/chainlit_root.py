"""Chainlit reads its config from a folder (CHAINLIT_APP_ROOT) and writes into it at import time.

We write our own config there before Chainlit is imported: our UI name, no file uploads (the models
here are text-only), no session persistence, and our words on the login page. The folder must be writable
(Chainlit keeps uploads and translations in it); the image points it at a directory the service user owns.
Its CORS origins are CHAT_ALLOWED_ORIGINS only (none by default), not Chainlit's "*": Chainlit allows credentials,
so "*" would let any web page call the chat's API with the visitor's login.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

from foundry_chat import __version__

CONFIG = """\
[project]
user_env = []
session_timeout = 3600
user_session_timeout = 1296000
cache = false
allow_origins = {allow_origins}

[features]
unsafe_allow_html = false
latex = false
user_message_markdown = true
edit_message = false

[features.spontaneous_file_upload]
enabled = false

[features.audio]
enabled = false

[features.mcp]
enabled = false

[UI]
name = "Foundry Local Chat"
description = "Private chat with local models on Foundry Local"
cot = "hidden"
default_sidebar_state = "closed"

[meta]
generated_by = "{chainlit_version}"
"""

WELCOME = """\
# Foundry Local Chat

A private chat with models running on your own machine through Foundry Local.
Open the settings (the sliders icon) to pick a model, the temperature, the answer length and the system prompt.
Every answer says which upstream and model produced it.
"""


# The login page (CHAT_PASSWORD), in English; other languages keep Chainlit's words. Its form asks for an e-mail
# address, but the login is CHAT_USERNAME; and it looks a failed login up by the response's status text
# ("Unauthorized"), which Chainlit's translations do not have, so it would only say "Unable to sign in".
LOGIN_WORDS = {
    ("auth", "login", "form", "email", "label"): "Username",
    ("auth", "login", "form", "email", "placeholder"): "your username",
    ("auth", "login", "form", "email", "required"): "username is a required field",
    ("auth", "login", "errors", "unauthorized"): "Wrong username or password.",
}


def write_if_changed(path: Path, text: str) -> None:
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_translation(root: Path) -> None:
    """Chainlit's en-US translation with LOGIN_WORDS; Chainlit copies its own only where none exists."""
    spec = importlib.util.find_spec("chainlit")  # finds the package without importing it
    assert spec is not None and spec.origin is not None
    translation = json.loads((Path(spec.origin).parent / "translations" / "en-US.json").read_text(encoding="utf-8"))
    for path, text in LOGIN_WORDS.items():
        node = translation
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = text
    folder = root / ".chainlit" / "translations"
    folder.mkdir(parents=True, exist_ok=True)
    write_if_changed(folder / "en-US.json", json.dumps(translation, indent=4, ensure_ascii=False))


def toml_strings(values: list[str]) -> str:
    """A TOML array of strings: JSON's, which is TOML but for DEL (U+007F), which TOML wants escaped."""
    return json.dumps(values, ensure_ascii=False).replace("\x7f", "\\u007f")


def prepare_chainlit_root(allowed_origins: list[str]) -> Path:
    """Create the folder with our config and point Chainlit at it; call before importing chainlit.

    `allowed_origins`: the other web origins whose pages may call the chat's API (CHAT_ALLOWED_ORIGINS); the
    chat's own pages need none (same-origin requests do not use CORS).
    """
    from importlib.metadata import version

    root = Path(os.environ.get("CHAINLIT_APP_ROOT") or Path(tempfile.gettempdir()) / f"foundry-chat-{__version__}")
    (root / ".chainlit").mkdir(parents=True, exist_ok=True)
    # An origin never ends with "/"; the browser's Origin header would not match one that does.
    origins = [origin.rstrip("/") for origin in allowed_origins]
    config = CONFIG.format(chainlit_version=version("chainlit"), allow_origins=toml_strings(origins))
    write_if_changed(root / ".chainlit" / "config.toml", config)
    write_translation(root)
    readme = root / "chainlit.md"
    if not readme.is_file():
        readme.write_text(WELCOME)
    os.environ["CHAINLIT_APP_ROOT"] = str(root)
    return root

"""Chainlit reads its config from a folder (CHAINLIT_APP_ROOT) and writes into it at import time.

We write our own config there before Chainlit is imported: our UI name, no file uploads (the models
here are text-only), no session persistence. The folder must be writable (Chainlit keeps uploads and
translations in it); the image points it at a directory the service user owns.
"""

from __future__ import annotations

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
allow_origins = ["*"]

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


def prepare_chainlit_root() -> Path:
    """Create the folder with our config and point Chainlit at it; call before importing chainlit."""
    from importlib.metadata import version

    root = Path(os.environ.get("CHAINLIT_APP_ROOT") or Path(tempfile.gettempdir()) / f"foundry-chat-{__version__}")
    (root / ".chainlit").mkdir(parents=True, exist_ok=True)
    config = CONFIG.format(chainlit_version=version("chainlit"))
    config_file = root / ".chainlit" / "config.toml"
    if not config_file.is_file() or config_file.read_text() != config:
        config_file.write_text(config)
    readme = root / "chainlit.md"
    if not readme.is_file():
        readme.write_text(WELCOME)
    os.environ["CHAINLIT_APP_ROOT"] = str(root)
    return root

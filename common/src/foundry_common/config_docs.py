"""The configuration tables of the docs, generated from the settings classes, so that a default is written once.

A page holds a table between `<!-- config: module:Class -->` and `<!-- /config -->`; `scripts/docs-config`
rewrites every such table, and a unit test fails when a page and the code disagree.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

MARKER = re.compile(r"(<!-- config: (?P<target>[\w.]+:\w+) -->\n)(?P<table>.*?)(<!-- /config -->)", re.DOTALL)


def shown_default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, SecretStr):  # a default is in the source anyway: no secret
        value = value.get_secret_value()
    if value is None or value == [] or value == {}:
        return "(unset)"
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, dict):
        value = ",".join(f"{k}={v}" for k, v in value.items())
    elif isinstance(value, bool):
        value = str(value).lower()
    return f"`{value}`"


def config_table(cls: type[BaseSettings]) -> str:
    lines = ["| variable | default | what it sets |", "| --- | --- | --- |"]
    own = vars(cls).get("__annotations__", {})
    # The class's own settings first, then those it inherits (pydantic lists them the other way round).
    for name, field in sorted(cls.model_fields.items(), key=lambda item: item[0] not in own):
        variable = field.validation_alias if isinstance(field.validation_alias, str) else name.upper()
        text = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{variable}` | {shown_default(field)} | {text} |")
    return "\n".join(lines) + "\n"


def settings_class(target: str) -> type[BaseSettings]:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def render(page: str) -> str:
    """The page with every marked table generated anew."""
    return MARKER.sub(lambda m: m.group(1) + config_table(settings_class(m.group("target"))) + m.group(4), page)


def update(paths: list[Path]) -> list[Path]:
    """Rewrite the pages whose tables are out of date; returns those."""
    changed = []
    for path in paths:
        text = path.read_text()
        fresh = render(text)
        if fresh != text:
            path.write_text(fresh)
            changed.append(path)
    return changed

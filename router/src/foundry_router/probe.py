"""Shape detection: which kind of OpenAI-compatible server is behind a base URL, and which models it has loaded.

Four shapes are told apart by routes only one of them has:
- ``foundry-cli``: the Foundry Local CLI/host service (``/openai/status``, ``/openai/loadedmodels``);
- ``foundry-embedded``: our embedded service's gateway (``/healthz`` with a ``state``; ``/v1/models`` = loaded);
- ``foundry-sdk``: the SDK's own web service (``/status``, ``/models/loaded``; ``/v1/models`` is the catalog);
- ``openai``: any other OpenAI server (``/v1/models``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import httpx

Shape = Literal["foundry-cli", "foundry-embedded", "foundry-sdk", "openai"]


class ProbeError(Exception):
    """The upstream could not be probed; the message says what failed, for people."""


@dataclass(frozen=True)
class ProbeResult:
    shape: Shape
    models: tuple[str, ...]
    # Only the embedded service reports these: its model may still be downloading or loading.
    state: str = "ready"
    message: str = ""
    download_percent: float | None = None
    # Context length per model id, where the server says it (our gateway does; the max_tokens fitting uses it).
    context_lengths: dict[str, int] = field(default_factory=dict, compare=False)
    # Alias -> model id, where the server names an alias beside the id (our gateway's `alias` field does).
    aliases: dict[str, str] = field(default_factory=dict, compare=False)


def service_root(base_url: str) -> str:
    """The server's root: the OpenAI base URL without its trailing /v1 (the status routes live there)."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


async def probe(
    client: httpx.AsyncClient, base_url: str, headers: dict[str, str], known: Shape | None = None
) -> ProbeResult:
    """Detect the shape (or re-use a known one) and list the loaded models."""
    root = service_root(base_url)
    try:
        if known is not None:
            return await PROBES[known](client, base_url, root, headers)
        for shape in ("foundry-cli", "foundry-embedded", "foundry-sdk"):
            result = await PROBES[shape](client, base_url, root, headers, detecting=True)
            if result is not None:
                return result
        return await probe_openai(client, base_url, root, headers)
    except httpx.TimeoutException:
        raise ProbeError("timed out") from None
    except httpx.ConnectError as exc:
        raise ProbeError(f"connection failed ({describe(exc)})") from None
    except httpx.HTTPError as exc:
        raise ProbeError(f"{type(exc).__name__}: {describe(exc)}") from None
    except ValueError as exc:  # JSON that is not what the shape promises
        raise ProbeError(f"unexpected answer: {exc}") from None


def describe(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


async def get_json(client: httpx.AsyncClient, url: str, headers: dict[str, str], detecting: bool) -> object | None:
    """GET a JSON document; while detecting, a 404 (or a non-JSON page) means "not this shape"."""
    response = await client.get(url, headers=headers)
    if detecting and (response.status_code in {404, 405} or "json" not in response.headers.get("content-type", "")):
        return None
    if response.status_code == 401 or response.status_code == 403:
        raise ProbeError(f"{url} refused the API key (HTTP {response.status_code}): check the key")
    if response.status_code >= 400 and not (response.status_code == 503 and url.endswith("/healthz")):
        raise ProbeError(f"{url} answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        if detecting:
            return None
        raise


def model_items(document: object) -> list:
    items = document.get("data", document.get("models")) if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise ValueError("no model list")
    return items


def model_ids(document: object) -> tuple[str, ...]:
    """Model ids from the shapes servers use: {"data": [{"id"}]}, [{"id"|"name"}], or ["id", ...]."""
    items = model_items(document)
    ids = []
    for item in items:
        if isinstance(item, str):
            ids.append(item)
        elif isinstance(item, dict):
            name = item.get("id") or item.get("name") or item.get("modelId")
            if isinstance(name, str):
                ids.append(name)
    return tuple(dict.fromkeys(ids))


# Names servers give the context window in their model list (ours, vLLM, others).
CONTEXT_FIELDS = ("context_length", "max_model_len", "context_window")


def context_lengths(document: object) -> dict[str, int]:
    found = {}
    for item in model_items(document):
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            length = next((item[k] for k in CONTEXT_FIELDS if isinstance(item.get(k), int) and item[k] > 0), None)
            if length is not None:
                found[item["id"]] = length
    return found


def aliases(document: object) -> dict[str, str]:
    """Alias -> id from model entries with an `alias` (the first entry wins an alias two entries give)."""
    found: dict[str, str] = {}
    for item in model_items(document):
        alias = item.get("alias") if isinstance(item, dict) else None
        if isinstance(alias, str) and alias and isinstance(item.get("id"), str) and alias != item["id"]:
            found.setdefault(alias, item["id"])
    return found


async def probe_cli(client, base_url, root, headers, detecting=False) -> ProbeResult | None:
    status = await get_json(client, f"{root}/openai/status", headers, detecting)
    if status is None:
        return None
    loaded = await get_json(client, f"{root}/openai/loadedmodels", headers, False)
    # Its loaded models are names only today; an alias beside one is taken should it start giving them.
    return ProbeResult("foundry-cli", model_ids(loaded), aliases=aliases(loaded))


async def probe_embedded(client, base_url, root, headers, detecting=False) -> ProbeResult | None:
    health = await get_json(client, f"{root}/healthz", headers, detecting)
    if not isinstance(health, dict) or "state" not in health:
        if detecting:
            return None
        raise ValueError("/healthz has no state")
    state = str(health["state"])
    download = health.get("download") or {}
    percent = download.get("percent") if isinstance(download, dict) else None
    models: tuple[str, ...] = ()
    lengths: dict[str, int] = {}
    names: dict[str, str] = {}
    if state == "ready":
        listing = await get_json(client, f"{base_url}/models", headers, False)
        models, lengths, names = model_ids(listing), context_lengths(listing), aliases(listing)
    return ProbeResult(
        "foundry-embedded",
        models,
        context_lengths=lengths,
        aliases=names,
        state=state,
        message=str(health.get("message") or ""),
        download_percent=float(percent) if isinstance(percent, int | float) else None,
    )


async def probe_sdk(client, base_url, root, headers, detecting=False) -> ProbeResult | None:
    status = await get_json(client, f"{root}/status", headers, detecting)
    if status is None:
        return None
    loaded = await get_json(client, f"{root}/models/loaded", headers, False)
    return ProbeResult("foundry-sdk", model_ids(loaded), aliases=aliases(loaded))


async def probe_openai(client, base_url, root, headers, detecting=False) -> ProbeResult:
    listing = await get_json(client, f"{base_url}/models", headers, False)
    return ProbeResult("openai", model_ids(listing), context_lengths=context_lengths(listing), aliases=aliases(listing))


PROBES = {
    "foundry-cli": probe_cli,
    "foundry-embedded": probe_embedded,
    "foundry-sdk": probe_sdk,
    "openai": probe_openai,
}

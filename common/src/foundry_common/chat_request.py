"""Check a chat completion request before the runtime sees it, so that bad input gets a 4xx naming the field
and saying what to send, rather than the runtime's C++ diagnostics, a 500, or a silently ignored value.

Written out rather than as pydantic models: pydantic reports a union such as `content` (a string or a list
of parts) as one error per branch, while each refusal here is one sentence about one field. Only the
fields the runtime reads are checked, and a request that passes goes on as it did before this check.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass

from foundry_common.protocol import CONTEXT_LENGTH_EXCEEDED, error_body

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_DEPTH = 100  # far beyond any real request (tool schemas included); deeper JSON is refused, not recursed into
MAX_STOP_STRINGS = 4  # the runtime's limit, as in OpenAI's API
INT32_MAX = 2**31 - 1  # the runtime reads token counts as int: larger values wrap and get a misleading message
EXAMPLE = '[{"role": "user", "content": "Hello"}]'
TEXT_PART = '{"type": "text", "text": "Hello"}'

_SURROGATE = re.compile("[\ud800-\udfff]")
# The runtime prefixes its messages with the C++ source line and function signature: noise for a client.
_CPP_LOCATION = re.compile(r"\b\w+\.(?:cc|cpp|h|hpp):\d+ ")
_JSON_EXCEPTION = re.compile(r"\[json\.exception\.[\w.]+\] ")
_BUDGET = re.compile(
    r"requires (\d+) total tokens \((\d+) input \+ (\d+) output\).*?context length of (\d+)", re.DOTALL
)


class RequestError(Exception):
    """A request we refuse, with the status and the message the client gets; `fields` go into the error object too
    (for programs: e.g. the counts of a context overflow, protocol.CONTEXT_FIELDS)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        fields: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.error_type, self.param = status, message, code, error_type, param
        self.fields = fields or {}

    @property
    def body(self) -> bytes:
        """The OpenAI error body the client gets."""
        return error_body(self.message, self.code, self.error_type, self.param, **self.fields)


def requested_model(payload: dict, choices: str) -> str:
    """The request's model id, or a 400 that says to send one of `choices` (said for people)."""
    model = payload.get("model")
    if model is None or model == "":
        raise RequestError(400, f"'model' is required: send {choices}.", "model_missing", param="model")
    if not isinstance(model, str):
        raise RequestError(400, f"Invalid 'model': must be a string, {choices}.", "invalid_type", param="model")
    return model


# -- the body as a whole ---------------------------------------------------------------------------


def check_content_type(value: str | None) -> None:
    """JSON or no Content-Type at all (as from `curl --data-binary`); a form or a file upload is a 415."""
    if not value:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return
    raise RequestError(
        415,
        f"Content-Type '{media[:100]}' is not JSON: send the request body as JSON with the header "
        "'Content-Type: application/json' (curl: -H 'Content-Type: application/json').",
        "unsupported_media_type",
    )


def parse_body(body: bytes) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it."""
    if not body:
        raise RequestError(400, "Request body is empty: send a JSON chat completion request.", "invalid_json")
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        message = "Request body is not UTF-8 text: send the request as UTF-8 encoded JSON."
        raise RequestError(400, message, "invalid_json") from None
    except RecursionError:
        raise RequestError(400, _too_deep("Request body"), "invalid_json") from None
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"Request body is not valid JSON: {exc}.", "invalid_json") from None
    except _NotJson as exc:
        raise RequestError(400, f"Request body is not valid JSON: {exc}.", "invalid_json") from None
    except ValueError:  # Python refuses to read an integer of thousands of digits
        reason = f"it holds an integer of over {sys.get_int_max_str_digits()} digits"
        raise RequestError(400, f"Request body is not valid JSON: {reason}.", "invalid_json") from None
    if not isinstance(payload, dict):
        raise RequestError(
            400,
            f'Request body must be a JSON object like {{"model": "...", "messages": {EXAMPLE}}}; got {_kind(payload)}.',
            "invalid_json",
        )
    _check_values(payload)
    return payload


class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> None:
    # Python's json reads NaN and Infinity; JSON (and the runtime) do not.
    raise _NotJson(f"{name} is not a JSON value (NaN and Infinity are not allowed)")


def _check_values(payload: dict) -> None:
    """Every string is valid Unicode and every number finite, at any depth (walked without recursion)."""
    stack: list[tuple[object, tuple, int]] = [(payload, (), 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise _surrogate_error(path, value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise _invalid(path, "must be a finite number (this one is too large for a float)", value)
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:  # named by its top-level field: the full path would be 100 levels long
                raise RequestError(400, _too_deep(f"'{path[0]}'"), "invalid_value", param=str(path[0]))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and _SURROGATE.search(key):
                    raise _surrogate_error((*path, key), key)
                stack.append((item, (*path, key), depth + 1))


def _surrogate_error(path: tuple, text: str) -> RequestError:
    found = _SURROGATE.search(text)
    code_point = f"\\u{ord(found.group()):04x}" if found else "a surrogate"
    return RequestError(
        400,
        f"Invalid '{_param(path)}': it contains the lone UTF-16 surrogate {code_point}, which is not valid "
        "Unicode: send well-formed text (a high surrogate \\ud800-\\udbff must be followed by a low one "
        "\\udc00-\\udfff).",
        "invalid_unicode",
        param=_param(path),
    )


def _too_deep(what: str) -> str:
    return f"{what} nests JSON arrays or objects more than {MAX_DEPTH} levels deep: flatten it."


# -- the fields the runtime reads ------------------------------------------------------------------


def check_chat_request(payload: dict, context_length: int | None) -> None:
    """Refuse, with a field-specific 400, a request the runtime would reject unclearly or misread."""
    _check_messages(payload)
    for name in ("max_tokens", "max_completion_tokens"):
        _check_token_budget(payload, name, context_length)
    _check_number(payload, "temperature", 0, 2)
    _check_number(payload, "top_p", 0, 1)
    _check_number(payload, "presence_penalty", -2, 2)
    _check_number(payload, "frequency_penalty", -2, 2)
    for name in ("stream", "logprobs"):
        _check_type(payload, name, bool, "true or false")
    _check_type(payload, "seed", int, "an integer")
    _check_type(payload, "user", str, "a string")
    _check_int_range(payload, "top_logprobs", 0, 20)
    _check_n(payload)
    _check_stream_options(payload)
    _check_stop(payload)
    _check_type(payload, "tools", list, "a list of tool objects")
    _check_type(payload, "response_format", dict, 'an object like {"type": "text"}')
    if payload.get("tool_choice") is not None and not isinstance(payload["tool_choice"], str | dict):
        raise _wrong_type(("tool_choice",), 'a string such as "auto" or a tool object', payload["tool_choice"])


def _check_messages(payload: dict) -> None:
    if payload.get("messages") is None:
        raise RequestError(
            400,
            f"'messages' is required: send the conversation as a list like {EXAMPLE}.",
            "missing_required_parameter",
            param="messages",
        )
    messages = payload["messages"]
    if not isinstance(messages, list):
        raise _wrong_type(("messages",), f"a list of messages like {EXAMPLE}", messages)
    # An empty list is left to the runtime, which refuses it (reworded by runtime_wording): so a probe
    # with no messages still tells a runtime that is gone (502) from one that answers.
    for index, message in enumerate(messages):
        path = ("messages", index)
        if not isinstance(message, dict):
            raise _wrong_type(path, 'an object like {"role": "user", "content": "Hello"}', message)
        role = message.get("role")
        if role is None:
            raise _missing((*path, "role"), f"every message needs a role, one of {_choices(ROLES)}")
        if not isinstance(role, str):
            raise _wrong_type((*path, "role"), f"one of {_choices(ROLES)}", role)
        if role not in ROLES:
            raise _invalid((*path, "role"), f"must be one of {_choices(ROLES)}", role)
        _check_content(message, path, role)
        _check_type(message, "name", str, "a string", path)
        _check_type(message, "tool_calls", list, "a list of tool calls", path)
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            if message.get("tool_call_id") is None:
                raise _missing((*path, "tool_call_id"), "a 'tool' message needs the id of the tool call it answers")
            raise _wrong_type((*path, "tool_call_id"), "a string", message["tool_call_id"])


def _check_content(message: dict, path: tuple, role: str) -> None:
    content = message.get("content")
    if content is None:
        if role == "assistant":  # an assistant turn that only called tools has no content
            return
        raise _missing(
            (*path, "content"), f'a \'{role}\' message needs its text, e.g. {{"role": "{role}", "content": "Hello"}}'
        )
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _wrong_type((*path, "content"), f"a string or a list of text parts like [{TEXT_PART}]", content)
    for index, part in enumerate(content):
        part_path = (*path, "content", index)
        if not isinstance(part, dict):
            raise _wrong_type(part_path, f"a content part like {TEXT_PART}", part)
        kind = part.get("type")
        if kind is None:
            raise _missing((*part_path, "type"), f"every content part needs a type: this model reads {TEXT_PART}")
        if kind != "text":
            raise RequestError(
                400,
                f"Invalid '{_param((*part_path, 'type'))}': this model reads text only, so a content part of "
                f"type {_show(kind)} is not supported: send the text as a string or as parts like {TEXT_PART}.",
                "unsupported_value",
                param=_param((*part_path, "type")),
            )
        if not isinstance(part.get("text"), str):
            if part.get("text") is None:
                raise _missing((*part_path, "text"), f"a text part carries its text, e.g. {TEXT_PART}")
            raise _wrong_type((*part_path, "text"), "a string", part["text"])


def _check_token_budget(payload: dict, name: str, context_length: int | None) -> None:
    value = payload.get(name)
    if value is None:
        return
    if not _is_int(value):
        raise _wrong_type((name,), "an integer number of tokens", value)
    if value < 1:
        raise _invalid((name,), "must be at least 1 (or left out, for a default that fits the model)", value)
    limit = min(context_length or INT32_MAX, INT32_MAX)
    if value > limit:
        context = f"the model's context of {context_length} tokens" if context_length else f"the limit of {limit}"
        raise RequestError(
            400,
            f"Invalid '{name}': {value} is more than {context}, which must hold the prompt as well: "
            f"send a smaller {name}, or leave it out for a default that fits.",
            CONTEXT_LENGTH_EXCEEDED,
            param=name,
            fields={"max_tokens": value, **({"context_tokens": context_length} if context_length else {})},
        )


def _check_number(payload: dict, name: str, low: float, high: float) -> None:
    value = payload.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong_type((name,), f"a number from {low:g} to {high:g}", value)
    if not low <= value <= high:
        raise _invalid((name,), f"must be from {low:g} to {high:g}", value)


def _check_int_range(payload: dict, name: str, low: int, high: int) -> None:
    value = payload.get(name)
    if value is None:
        return
    if not _is_int(value):
        raise _wrong_type((name,), f"an integer from {low} to {high}", value)
    if not low <= value <= high:
        raise _invalid((name,), f"must be from {low} to {high}", value)


def _check_n(payload: dict) -> None:
    value = payload.get("n")
    if value is None:
        return
    if not _is_int(value):
        raise _wrong_type(("n",), "the integer 1", value)
    if value != 1:
        # The runtime answers n=2 with one choice: better said than silently ignored.
        raise _invalid(("n",), "must be 1: this service returns one choice per request (ask again for another)", value)


def _check_stream_options(payload: dict) -> None:
    options = payload.get("stream_options")
    if options is None:
        return
    if not isinstance(options, dict):
        raise _wrong_type(("stream_options",), 'an object like {"include_usage": true}', options)
    _check_type(options, "include_usage", bool, "true or false", ("stream_options",))


def _check_stop(payload: dict) -> None:
    stop = payload.get("stop")
    if stop is None or isinstance(stop, str):
        return
    what = f"a string or a list of at most {MAX_STOP_STRINGS} strings"
    if not isinstance(stop, list):
        raise _wrong_type(("stop",), what, stop)
    if len(stop) > MAX_STOP_STRINGS:
        raise _invalid(("stop",), f"must be {what}", stop)
    for index, item in enumerate(stop):
        if not isinstance(item, str):
            raise _wrong_type(("stop", index), "a string", item)


def _check_type(payload: dict, name: str, kind: type, what: str, parent: tuple = ()) -> None:
    value = payload.get(name)
    if value is None:
        return
    if not (_is_int(value) if kind is int else isinstance(value, kind)):
        raise _wrong_type((*parent, name), what, value)


# -- the runtime's own refusals --------------------------------------------------------------------


def clean_runtime_message(message: str) -> str:
    """The runtime's message without the C++ source location, function signature and JSON-library tags."""
    while match := _CPP_LOCATION.search(message):
        end = _end_of_signature(message, match.end())
        message = message[: match.start()] + message[end:].lstrip()
    return _JSON_EXCEPTION.sub("", message).strip()


def _end_of_signature(text: str, start: int) -> int:
    # The signature ends at the parenthesis that closes its parameter list (and a trailing " const").
    opened = text.find("(", start)
    if opened < 0:
        return start
    depth = 0
    for index in range(opened, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            end = index + 1
            return end + len(" const") if text.startswith(" const", end) else end
    return start


def runtime_wording(message: str) -> RequestError | None:
    """A clearer wording of a runtime refusal that names a field but not what to send."""
    if message == "Missing required field: messages":  # its answer to "messages": []
        return _invalid(("messages",), f"must hold at least one message, e.g. {EXAMPLE}", [])
    return None


# About three characters per token for English text with BPE tokenizers, rounded up: estimates err on the safe
# side (a prompt judged longer than it is). Used wherever a service guesses tokens without the model's tokenizer.
CHARS_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4  # role markers and separators of a chat template


def estimate_prompt_tokens(messages: object) -> int:
    """A generous token count of the messages' text (strings and text parts)."""
    if not isinstance(messages, list):
        return 0
    chars = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(
                len(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    return -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


@dataclass(frozen=True)
class Budget:
    """The tokens a request needs against the model's context, as the runtime counted them."""

    prompt: int
    output: int  # max_tokens
    context: int

    @property
    def room(self) -> int:
        """Output tokens that fit after this prompt (0 or less: the prompt alone is too long)."""
        return self.context - self.prompt


def runtime_budget(message: str) -> Budget | None:
    """The counts in the Foundry Local runtime's own context refusal ('requires N total tokens (P input + O output)
    ... context length of C'). Its wording is the runtime's, not ours: it is read here and nowhere else."""
    match = _BUDGET.search(message)
    if match is None:
        return None
    _, prompt, output, context = (int(group) for group in match.groups())
    return Budget(prompt, output, context)


def context_exceeded(message: str, max_tokens_defaulted: bool) -> RequestError | None:
    """The runtime's 'request requires N total tokens ...' refusal, said as what to do about it, with the counts as
    fields (protocol.CONTEXT_FIELDS) for programs.

    The runtime counts the prompt's tokens with the model's own tokenizer before generating (about 0.1 s
    for a 1 MB prompt), so the gateway words its answer rather than estimating tokens itself.
    """
    budget = runtime_budget(message)
    return None if budget is None else context_refusal(budget, max_tokens_defaulted)


def context_refusal(budget: Budget, max_tokens_defaulted: bool) -> RequestError:
    """A request whose prompt and max_tokens do not fit the context: what to change, and the counts."""
    prompt, output, context, room = budget.prompt, budget.output, budget.context, budget.room
    said = f"max_tokens ({output}"
    said += ", the default added when a request sends none)" if max_tokens_defaulted else ")"
    if room <= 0:
        advice = "shorten the conversation (the prompt alone is longer than the context)"
    elif max_tokens_defaulted:
        advice = f"shorten the conversation or send a max_tokens of at most {room}"
    else:
        advice = f"shorten the conversation or lower max_tokens to at most {room}"
    fields = {"prompt_tokens": prompt, "max_tokens": output, "context_tokens": context, "room": max(room, 0)}
    return RequestError(
        400,
        f"The prompt ({prompt} tokens) and {said} need {prompt + output} tokens, more than the model's context of "
        f"{context} tokens: {advice}.",
        CONTEXT_LENGTH_EXCEEDED,
        param="messages",
        fields=fields,
    )


def context_room(error: dict) -> int | None:
    """From an upstream's error object: the output tokens that fit, when it is a context overflow that says (our
    structured fields, or the host runtime's own sentence when the router talks to it directly); else None."""
    if error.get("code") == CONTEXT_LENGTH_EXCEEDED and _is_int(error.get("room")):
        return error["room"]
    budget = runtime_budget(str(error.get("message", "")))
    return budget.room if budget is not None else None


# -- wording ---------------------------------------------------------------------------------------


def _param(path: tuple) -> str:
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    # A key may itself hold the lone surrogate being reported: escaped, so that logs can print it.
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) or "body"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _show(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def _wrong_type(path: tuple, what: str, value: object) -> RequestError:
    return RequestError(
        400,
        f"Invalid '{_param(path)}': must be {what}; got {_kind(value)}, {_show(value)}.",
        "invalid_type",
        param=_param(path),
    )


def _invalid(path: tuple, problem: str, value: object) -> RequestError:
    return RequestError(
        400, f"Invalid '{_param(path)}': {problem}; got {_show(value)}.", "invalid_value", param=_param(path)
    )


def _missing(path: tuple, advice: str) -> RequestError:
    return RequestError(400, f"Missing '{_param(path)}': {advice}.", "missing_required_parameter", param=_param(path))

"""Bad input against the real gateway and runtime (tiny model, context 4096): every bad request gets a 4xx in
the OpenAI error shape with a message that names what was wrong, and the service keeps serving.

The properties run as inner @given functions, so that after each run the test can check that the same
gateway process still answers a normal chat request and reports ready.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foundry_common.protocol import CONTEXT_FIELDS, CONTEXT_LENGTH_EXCEEDED
from tests.support.process import GatewayProcess, metric_sum

pytestmark = pytest.mark.integration

CHAT = "/v1/chat/completions"
CONTEXT = 4096  # the tiny model's context_length (scripts/make-tiny-model)
HELLO = [{"role": "user", "content": "Hello"}]
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
ERROR_KEYS = {"message", "type", "param", "code"}

# A refusal takes a few milliseconds (none reaches generation): these counts try well over a thousand
# bodies and keep the file far under a minute on two cores.
FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- strategies ------------------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers() | finite | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
containers = st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=5), scalars, max_size=3)
not_a_string = st.booleans() | st.integers() | finite | containers
not_an_int = st.booleans() | finite | st.text(max_size=10) | containers
not_a_number = st.booleans() | st.text(max_size=10) | containers
not_a_bool = st.integers() | finite | st.text(max_size=10) | containers
not_a_list = st.booleans() | st.integers() | finite | st.text(max_size=10) | st.dictionaries(st.text(), scalars)
not_an_object = st.booleans() | st.integers() | finite | st.text(max_size=10) | st.lists(scalars, max_size=3)
text_part = st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=10))
not_a_text_part = not_an_object | st.fixed_dictionaries(
    {"type": st.sampled_from(["image_url", "input_audio", "file"]) | st.text().filter(lambda t: t != "text")}
)


@st.composite
def bad_content(draw: st.DrawFn) -> object:
    """Content that is neither a string nor a list of text parts (null is drawn in bad_messages)."""
    parts = draw(st.lists(text_part, max_size=2))
    with_bad_part = [*parts, draw(not_a_text_part), *draw(st.lists(text_part, max_size=2))]
    return draw(st.booleans() | st.integers() | finite | st.dictionaries(st.text(), scalars) | st.just(with_bad_part))


@st.composite
def bad_messages(draw: st.DrawFn) -> object:
    role = st.sampled_from([r for r in ROLES if r not in ("assistant", "tool")])
    return draw(
        st.one_of(
            not_a_list,
            st.lists(not_an_object, min_size=1, max_size=3),
            st.builds(lambda r: [{"role": r, "content": "Hello"}], st.text().filter(lambda r: r not in ROLES)),
            st.builds(lambda r: [{"role": r, "content": "Hello"}], not_a_string),
            st.just([{"content": "Hello"}]),
            st.builds(lambda r, c: [*HELLO, {"role": r, "content": c}], role, bad_content()),
            st.builds(lambda r: [{"role": r}], role),
            st.builds(lambda r: [{"role": r, "content": None}], role),
        )
    )


def out_of(low: float, high: float) -> st.SearchStrategy:
    return (finite | st.integers()).filter(lambda v: not low <= v <= high)


# One field of a good request replaced by a bad value, and the field the error must name.
WRONG_FIELDS = {
    "model": st.none() | not_a_string | st.just("") | st.text(min_size=1).filter(lambda t: "tiny" not in t),
    "messages": bad_messages(),
    "max_tokens": not_an_int | st.integers(max_value=0) | st.integers(min_value=CONTEXT + 1),
    "max_completion_tokens": not_an_int | st.integers(max_value=0) | st.integers(min_value=CONTEXT + 1),
    "temperature": not_a_number | out_of(0, 2),
    "top_p": not_a_number | out_of(0, 1),
    "stream": not_a_bool,
    "n": not_an_int | st.integers().filter(lambda n: n != 1),
    "seed": not_an_int,
    "stop": st.booleans()
    | st.integers()
    | finite
    | st.dictionaries(st.text(), scalars)
    | st.lists(st.text(max_size=5), min_size=5, max_size=8)
    | st.lists(not_a_string, min_size=1, max_size=3),
    "stream_options": not_an_object,
}


# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    # A timeout, so that a hang fails the test instead of stalling it.
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def model_id(gateway: GatewayProcess) -> str:
    return gateway.healthz().json()["model"]


def good(model_id: str, **fields: object) -> dict:
    return {"model": model_id, "messages": HELLO, "max_tokens": 4, **fields}


def post_json(http: httpx.Client, body: object) -> httpx.Response:
    return http.post(CHAT, content=json.dumps(body).encode(), headers={"content-type": "application/json"})


def assert_refused(response: httpx.Response, status: int | None = None) -> dict:
    """A 4xx in the OpenAI error shape, with a message that says something; returns the error."""
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
    if status is not None:
        assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    extra = CONTEXT_FIELDS if error.get("code") == CONTEXT_LENGTH_EXCEEDED else ()  # the counts, for programs
    assert ERROR_KEYS <= set(error) <= ERROR_KEYS | set(extra), error
    assert isinstance(error["message"], str) and len(error["message"]) >= 20, error
    assert error["type"] == "invalid_request_error"
    assert isinstance(error["code"], str) and error["code"]
    assert error["param"] is None or isinstance(error["param"], str)
    return error


def refused_total(http: httpx.Client) -> float:
    """Chat requests answered with a 4xx so far, by the gateway's own metrics."""
    text = http.get("/metrics").text
    return sum(
        metric_sum(text, "foundry_local_gateway_requests_total", route=CHAT, status=str(status))
        for status in (400, 404, 405, 413, 415)
    )


def assert_still_serving(gateway: GatewayProcess, http: httpx.Client, model_id: str) -> None:
    assert gateway.proc.poll() is None, f"the gateway exited:\n{gateway.log()[-3000:]}"
    health = gateway.healthz()
    assert health.status_code == 200 and health.json()["state"] == "ready", health.text
    answer = post_json(http, good(model_id))
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] > 0


# -- properties ------------------------------------------------------------------------------------


def test_any_json_value_as_the_body_is_refused(gateway: GatewayProcess, http: httpx.Client, model_id: str) -> None:
    @MANY
    @given(body=json_values | st.dictionaries(st.text(max_size=10), json_values, max_size=6))
    def refused(body: object) -> None:
        error = assert_refused(post_json(http, body))
        if not isinstance(body, dict):
            assert "must be a JSON object" in error["message"]
        else:  # no usable model: random text never names the loaded one
            assert "model" in error["message"].lower()

    refused()
    assert_still_serving(gateway, http, model_id)


def test_one_wrong_field_is_refused_naming_the_field(
    gateway: GatewayProcess, http: httpx.Client, model_id: str
) -> None:
    sent = []
    before = refused_total(http)

    @MANY
    @given(case=st.sampled_from(sorted(WRONG_FIELDS)).flatmap(lambda f: st.tuples(st.just(f), WRONG_FIELDS[f])))
    def refused(case: tuple[str, object]) -> None:
        field, value = case
        body = good(model_id, **{field: value})
        if field == "max_completion_tokens":
            del body["max_tokens"]
        response = post_json(http, body)
        sent.append(field)
        error = assert_refused(response)
        assert field in error["message"].lower(), error
        assert (error["param"] or "").startswith(field), error

    refused()
    # Every refusal is counted by status, as other answers are.
    assert refused_total(http) == before + len(sent)
    assert_still_serving(gateway, http, model_id)


def test_arbitrary_messages_are_answered_or_refused_never_failed(
    gateway: GatewayProcess, http: httpx.Client, model_id: str
) -> None:
    # Some of these are valid (they pass through and get an answer); none may get a 5xx.
    keys = st.sampled_from(["role", "content", "name", "tool_call_id"])
    values = st.sampled_from(ROLES) | st.text(max_size=8) | st.lists(text_part, max_size=2) | json_values
    message = st.dictionaries(keys, values, max_size=4) | st.builds(
        lambda role, content: {"role": role, "content": content},
        st.sampled_from(ROLES),
        st.text(max_size=20) | st.lists(text_part | json_values, max_size=2) | json_values,
    )

    @MANY
    @given(messages=st.lists(message, max_size=4), stream=st.booleans())
    def answered_or_refused(messages: list, stream: bool) -> None:
        response = post_json(http, good(model_id, messages=messages, stream=stream))
        if response.status_code == 200:
            assert response.text.startswith("data:") if stream else response.json()["object"] == "chat.completion"
        else:
            error = assert_refused(response)
            assert "messages" in error["message"] or "tool call" in error["message"], error

    answered_or_refused()
    assert_still_serving(gateway, http, model_id)


def test_arbitrary_bytes_as_the_body_are_refused(gateway: GatewayProcess, http: httpx.Client, model_id: str) -> None:
    @MANY
    @given(body=st.binary(max_size=2048))
    def refused(body: bytes) -> None:
        error = assert_refused(http.post(CHAT, content=body, headers={"content-type": "application/json"}))
        assert "body" in error["message"].lower() or "model" in error["message"].lower(), error

    refused()
    assert_still_serving(gateway, http, model_id)


def test_invalid_utf8_is_refused(gateway: GatewayProcess, http: httpx.Client, model_id: str) -> None:
    def undecodable(data: bytes) -> bool:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    @SOME
    @given(bad=st.binary(min_size=1, max_size=6).filter(undecodable), before=st.text(max_size=10))
    def refused(bad: bytes, before: str) -> None:
        head = json.dumps(good(model_id, messages=[{"role": "user", "content": before}]))
        cut = head.index('"}]')  # inside the content string
        body = head[:cut].encode() + bad + head[cut:].encode()
        error = assert_refused(http.post(CHAT, content=body, headers={"content-type": "application/json"}))
        assert any(word in error["message"] for word in ("UTF-8", "surrogate", "JSON")), error

    refused()
    assert_still_serving(gateway, http, model_id)


def test_lone_surrogates_are_refused_naming_the_field(
    gateway: GatewayProcess, http: httpx.Client, model_id: str
) -> None:
    def escaped(text: str) -> str:
        return json.dumps(text)[1:-1]

    @SOME
    @given(
        where=st.sampled_from(["content", "model", "role", "name", "stop", "key"]),
        surrogate=st.integers(0xD800, 0xDFFF),
        before=st.text(max_size=8),
        after=st.text(max_size=8),
    )
    def refused(where: str, surrogate: int, before: str, after: str) -> None:
        # Escaped text never starts with a low surrogate nor ends with a high one, so the one put between
        # is lone: the JSON text is well-formed, the string it decodes to is not Unicode.
        lone = f"{escaped(before)}\\u{surrogate:04x}{escaped(after)}"
        fields = {
            "content": f'{{"model": "{model_id}", "messages": [{{"role": "user", "content": "{lone}"}}]}}',
            "model": f'{{"model": "{lone}", "messages": [{{"role": "user", "content": "Hi"}}]}}',
            "role": f'{{"model": "{model_id}", "messages": [{{"role": "{lone}", "content": "Hi"}}]}}',
            "name": f'{{"model": "{model_id}", "messages": [{{"role": "user", "content": "Hi", "name": "{lone}"}}]}}',
            "stop": f'{{"model": "{model_id}", "messages": [{{"role": "user", "content": "Hi"}}], "stop": "{lone}"}}',
            "key": f'{{"model": "{model_id}", "messages": [{{"role": "user", "content": "Hi"}}], "{lone}": 1}}',
        }
        response = http.post(CHAT, content=fields[where].encode(), headers={"content-type": "application/json"})
        error = assert_refused(response, 400)
        assert "surrogate" in error["message"], error
        assert error["param"], error

    refused()
    assert_still_serving(gateway, http, model_id)


def test_non_json_content_types_are_refused(gateway: GatewayProcess, http: httpx.Client, model_id: str) -> None:
    media = st.from_regex(r"\A[a-z]{1,10}/[a-z0-9.-]{1,16}\Z").filter(lambda m: m != "application/json")
    well_known = st.sampled_from(
        ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/octet-stream"]
    )

    @SOME
    @given(content_type=well_known | media, charset=st.booleans())
    def refused(content_type: str, charset: bool) -> None:
        header = f"{content_type}; charset=utf-8" if charset else content_type
        response = http.post(CHAT, content=json.dumps(good(model_id)).encode(), headers={"content-type": header})
        error = assert_refused(response, 415)
        assert "Content-Type: application/json" in error["message"], error

    refused()
    assert_still_serving(gateway, http, model_id)


def test_wrong_methods_are_refused_with_the_allowed_one(
    gateway: GatewayProcess, http: httpx.Client, model_id: str
) -> None:
    routes = {CHAT: "POST", "/v1/models": "GET", "/healthz": "GET", "/readyz": "GET", "/metrics": "GET"}
    # Methods the HTTP parser knows (it refuses others before the app); HEAD is allowed with GET, and its
    # answer has no body to check.
    methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "PURGE"])

    @SOME
    @given(path=st.sampled_from(sorted(routes)), method=methods)
    def refused(path: str, method: str) -> None:
        if method == routes[path]:
            return
        error = assert_refused(http.request(method, path, content=b"{}"), 405)
        assert f"use {routes[path]}" in error["message"], error

    refused()
    assert_still_serving(gateway, http, model_id)


def test_over_context_requests_are_refused_stating_the_limit(
    gateway: GatewayProcess, http: httpx.Client, model_id: str
) -> None:
    @FEW
    @given(
        # 40,000 characters or more: over 5,000 tokens, as no token of the tiny model is longer than 8 bytes.
        unit=st.text(alphabet="abcdefghijklmnopqrstuvwxyz .,", min_size=1, max_size=12),
        size=st.integers(40_000, 200_000),
        max_tokens=st.none() | st.integers(1, CONTEXT),
        stream=st.booleans(),
    )
    def refused(unit: str, size: int, max_tokens: int | None, stream: bool) -> None:
        prompt = (unit * (size // len(unit) + 1))[:size]
        body = {"model": model_id, "messages": [{"role": "user", "content": prompt}], "stream": stream}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        error = assert_refused(post_json(http, body), 400)
        assert error["code"] == "context_length_exceeded", error
        assert f"context of {CONTEXT} tokens" in error["message"], error
        assert "shorten the conversation" in error["message"], error

    refused()
    assert_still_serving(gateway, http, model_id)


def test_max_tokens_beyond_the_context_is_refused(gateway: GatewayProcess, http: httpx.Client, model_id: str) -> None:
    @SOME
    @given(field=st.sampled_from(["max_tokens", "max_completion_tokens"]), value=st.integers(CONTEXT + 1, 2**63))
    def refused(field: str, value: int) -> None:
        body = {"model": model_id, "messages": HELLO, field: value}
        error = assert_refused(post_json(http, body), 400)
        assert error["param"] == field
        assert f"context of {CONTEXT} tokens" in error["message"] and str(value) in error["message"], error

    refused()
    assert_still_serving(gateway, http, model_id)


# -- the named cases, spelled out ------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_over_context_prompt_is_a_400_that_states_the_limit(http: httpx.Client, model_id: str, stream: bool) -> None:
    # The runtime counts the tokens itself; a stream is refused before it starts, not inside a 200.
    body = good(model_id, messages=[{"role": "user", "content": "hello world " * 2000}], stream=stream)
    response = post_json(http, body)
    error = assert_refused(response, 400)
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "messages"
    message = error["message"]
    assert "and max_tokens (4) need" in message
    assert "more than the model's context of 4096 tokens: shorten the conversation" in message
    assert ".cc:" not in message and "fl::" not in message, "no C++ source locations for the client"
    # The runtime's own refusal, read once (chat_request.runtime_budget), comes out with its counts as fields.
    assert error["max_tokens"] == 4 and error["context_tokens"] == CONTEXT and error["room"] == 0
    assert error["prompt_tokens"] > CONTEXT and f"The prompt ({error['prompt_tokens']} tokens)" in message


def test_default_max_tokens_that_does_not_fit_says_what_would(http: httpx.Client, model_id: str) -> None:
    # A prompt that fits, but not with the 512 tokens the gateway adds when a client (Open WebUI) sends none.
    messages = [{"role": "user", "content": "hello world " * 780}]
    fits = post_json(http, good(model_id, messages=messages, max_tokens=1))
    assert fits.status_code == 200, fits.text
    prompt_tokens = fits.json()["usage"]["prompt_tokens"]
    assert prompt_tokens + 512 > CONTEXT, "the prompt must leave less room than the default max_tokens"

    error = assert_refused(post_json(http, {"model": model_id, "messages": messages}), 400)
    assert f"The prompt ({prompt_tokens} tokens) and max_tokens (512, the default" in error["message"]
    assert f"or send a max_tokens of at most {CONTEXT - prompt_tokens}." in error["message"]
    assert (error["prompt_tokens"], error["max_tokens"], error["room"]) == (prompt_tokens, 512, CONTEXT - prompt_tokens)


def test_max_tokens_over_the_context_is_refused_before_the_runtime(http: httpx.Client, model_id: str) -> None:
    # 2**31 would wrap in the runtime, which then says "must be >= 1".
    error = assert_refused(post_json(http, good(model_id, max_tokens=2**31)), 400)
    assert error["param"] == "max_tokens"
    assert "2147483648 is more than the model's context of 4096 tokens" in error["message"]


@pytest.mark.parametrize(
    ("content_type", "status"), [("application/json", 400), ("image/png", 415), ("application/octet-stream", 415)]
)
def test_binary_body_is_refused(http: httpx.Client, content_type: str, status: int) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
    error = assert_refused(http.post(CHAT, content=png, headers={"content-type": content_type}), status)
    expected = "not UTF-8" if status == 400 else "is not JSON"
    assert expected in error["message"]


def test_invalid_utf8_in_content_is_a_400(http: httpx.Client, model_id: str) -> None:
    body = b'{"model": "' + model_id.encode() + b'", "messages": [{"role": "user", "content": "caf\xe9"}]}'
    error = assert_refused(http.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)
    assert error["message"] == "Request body is not UTF-8 text: send the request as UTF-8 encoded JSON."


def test_lone_surrogate_in_content_is_a_400_naming_the_field(http: httpx.Client, model_id: str) -> None:
    hello = json.dumps(HELLO[0])
    body = f'{{"model": "{model_id}", "messages": [{hello}, {{"role": "user", "content": "a\\ud800b"}}]}}'
    error = assert_refused(http.post(CHAT, content=body.encode(), headers={"content-type": "application/json"}), 400)
    assert error["param"] == "messages[1].content"
    assert "lone UTF-16 surrogate \\ud800" in error["message"]


def test_lone_surrogate_in_the_model_name_is_a_400_not_a_500(http: httpx.Client) -> None:
    # The 404 for an unknown model quotes the name: a lone surrogate in it used to fail to encode (500).
    body = b'{"model": "\\udfff", "messages": [{"role": "user", "content": "Hi"}]}'
    error = assert_refused(http.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)
    assert error["param"] == "model"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"messages": [], "temperature": NaN}', "NaN is not a JSON value"),
        (b'{"messages": [], "top_p": Infinity}', "Infinity is not a JSON value"),
        (b'{"messages": [], "temperature": 1e999}', "must be a finite number"),
        (b'{"seed": ' + b"9" * 5000 + b"}", "integer of over 4300 digits"),
        (b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "more than 100 levels deep"),
        (b'{"x": ' + b"[" * 150 + b"]" * 150 + b"}", "'x' nests JSON arrays or objects more than 100 levels deep"),
        (b'{"model": ', "not valid JSON"),
        (b"", "Request body is empty"),
    ],
)
def test_malformed_json_is_a_400_saying_what_is_wrong(http: httpx.Client, body: bytes, expected: str) -> None:
    # Each of these used to be a 500 (deep nesting), or reached the runtime as JSON it cannot read.
    error = assert_refused(http.post(CHAT, content=body, headers={"content-type": "application/json"}), 400)
    assert expected in error["message"]


def test_text_parts_pass_through_and_other_parts_are_refused(http: httpx.Client, model_id: str) -> None:
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}]
    answer = post_json(http, good(model_id, messages=[{"role": "user", "content": parts}]))
    assert answer.status_code == 200, answer.text

    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    error = assert_refused(post_json(http, good(model_id, messages=[{"role": "user", "content": [image]}])), 400)
    assert error["param"] == "messages[0].content[0].type"
    assert "text only" in error["message"] and '"image_url"' in error["message"]


@pytest.mark.parametrize(
    ("messages", "param", "expected"),
    [
        ([], "messages", "must hold at least one message"),
        ([{"role": "wizard", "content": "Hi"}], "messages[0].role", "must be one of 'system', 'developer', 'user'"),
        ([{"content": "Hi"}], "messages[0].role", "every message needs a role"),
        ([{"role": "user"}], "messages[0].content", "a 'user' message needs its text"),
        ([{"role": "user", "content": 42}], "messages[0].content", "a string or a list of text parts"),
        ([{"role": "tool", "content": "42"}], "messages[0].tool_call_id", "needs the id of the tool call"),
    ],
)
def test_bad_messages_name_the_message_and_field(
    http: httpx.Client, model_id: str, messages: list, param: str, expected: str
) -> None:
    error = assert_refused(post_json(http, good(model_id, messages=messages)), 400)
    assert error["param"] == param
    assert expected in error["message"]


def test_wrong_method_and_unknown_route_get_the_openai_shape(http: httpx.Client) -> None:
    wrong = http.get(CHAT)
    assert (
        assert_refused(wrong, 405)["message"]
        == "GET /v1/chat/completions is not supported: use POST /v1/chat/completions."
    )
    assert wrong.headers["allow"] == "POST"
    unknown = assert_refused(http.post("/v1/responses", json={}), 404)
    assert "POST /v1/chat/completions" in unknown["message"]


def test_refusals_are_counted_by_status_and_code(http: httpx.Client, model_id: str) -> None:
    def count(name: str, **labels: str) -> float:
        return metric_sum(http.get("/metrics").text, name, route=CHAT, **labels)

    before = {status: count("foundry_local_gateway_requests_total", status=status) for status in ("400", "405", "415")}
    before_type = count("foundry_local_gateway_errors_total", error_type="invalid_type")
    http.post(CHAT, content=b"{}", headers={"content-type": "text/plain"})
    post_json(http, good(model_id, temperature="hot"))
    http.get(CHAT)
    for status in before:
        assert count("foundry_local_gateway_requests_total", status=status) == before[status] + 1, status
    assert count("foundry_local_gateway_errors_total", error_type="invalid_type") == before_type + 1

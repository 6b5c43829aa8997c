"""Errors: OpenAI-shaped bodies with CozyEngine codes, the right status, and the SDK's exception
classes; upstream failures before and during a stream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import ERROR_KEYS, STUB_MODEL, assert_error_body, sse_events, user

UPSTREAM_FAILURE_CODES = {"ENGINE_UPSTREAM_ERROR", "ENGINE_UNAVAILABLE"}


def check_sdk_error(err: openai.APIStatusError, status: int, code: str, param: str | None = None) -> None:
    assert err.status_code == status
    assert err.code == code
    assert isinstance(err.body, dict) and ERROR_KEYS <= set(err.body), err.body
    assert err.body["request_id"] and err.body["request_id"] == err.response.headers["x-request-id"]
    if param is not None:
        assert err.param == param


# --- request validation -------------------------------------------------------------------------
def test_invalid_json_body(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", content=b'{"model": "x", "messages": [', headers={"content-type": "application/json"}
    )
    err = assert_error_body(response, 400, "VALIDATION_INVALID_JSON")
    assert err["type"] == "invalid_request_error"
    assert response.headers.get("x-should-retry") == "false"


def test_empty_and_non_object_bodies(http: httpx.Client) -> None:
    empty = http.post("/v1/chat/completions", content=b"", headers={"content-type": "application/json"})
    assert_error_body(empty, 400, "VALIDATION_INVALID_JSON")
    array = http.post("/v1/chat/completions", json=[{"role": "user", "content": "hi"}])
    assert_error_body(array, 400, "VALIDATION_ERROR")


def test_empty_messages(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=STUB_MODEL, messages=[])
    check_sdk_error(info.value, 400, "VALIDATION_ERROR", param="messages")
    assert info.value.type == "invalid_request_error"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"temperature": 5}, "temperature"),
        ({"n": 2}, "n"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
    ],
)
def test_invalid_sampling_parameters(client: openai.OpenAI, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=STUB_MODEL, messages=user("hi"), **kwargs)
    check_sdk_error(info.value, 400, "VALIDATION_ERROR", param=param)


def test_missing_model_and_bad_role(http: httpx.Client) -> None:
    no_model = http.post("/v1/chat/completions", json={"messages": user("hi")})
    assert assert_error_body(no_model, 400, "VALIDATION_ERROR")["param"] == "model"
    bad_role = http.post(
        "/v1/chat/completions", json={"model": STUB_MODEL, "messages": [{"role": "robot", "content": "hi"}]}
    )
    assert assert_error_body(bad_role, 400, "VALIDATION_ERROR")["param"].startswith("messages")


def test_unknown_cozy_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=STUB_MODEL, messages=user("hi"), extra_body={"cozy": {"bogus": 1}})
    check_sdk_error(info.value, 400, "VALIDATION_ERROR", param="cozy.bogus")


# --- upstream failures -----------------------------------------------------------------------------
def test_upstream_500_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=STUB_MODEL, messages=user("FAIL 500"))
    check_sdk_error(info.value, 502, "ENGINE_UPSTREAM_ERROR")
    assert info.value.type == "server_error"


def test_upstream_500_before_stream_is_502(client: openai.OpenAI) -> None:
    """A failure before the first token is still a plain HTTP error, not an SSE stream."""
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=STUB_MODEL, messages=user("FAIL 503"), stream=True)
    check_sdk_error(info.value, 502, "ENGINE_UPSTREAM_ERROR")


def test_upstream_400_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=STUB_MODEL, messages=user("FAIL 400"))
    assert info.value.status_code == 400
    assert info.value.code.startswith("VALIDATION_")
    assert info.value.body["request_id"] == info.value.response.headers["x-request-id"]


def test_upstream_drop_midstream_raises_in_sdk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=STUB_MODEL, messages=user("FAIL_MIDSTREAM now"), stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received).startswith("Echo:")  # the partial answer arrived before the error
    assert isinstance(info.value.body, dict) and ERROR_KEYS <= set(info.value.body)


def test_upstream_drop_midstream_wire_format(http: httpx.Client) -> None:
    payload = {"model": STUB_MODEL, "messages": user("FAIL_MIDSTREAM now"), "stream": True}
    response = http.post("/v1/chat/completions", json=payload)
    assert response.status_code == 200
    events = sse_events(response.text)
    assert "[DONE]" not in events
    err = json.loads(events[-1])["error"]
    assert ERROR_KEYS <= set(err)
    assert err["request_id"] == response.headers["x-request-id"]
    # The upstream broke the connection: an upstream failure, not an internal crash.
    assert err["code"] in UPSTREAM_FAILURE_CODES, err


def test_upstream_drop_non_stream_is_502(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=STUB_MODEL, messages=user("FAIL_MIDSTREAM now"))
    err = info.value
    assert err.body["request_id"] == err.response.headers["x-request-id"]
    assert err.status_code == 502, err.body
    assert err.code in UPSTREAM_FAILURE_CODES, err.body


# --- routing errors and request ids ---------------------------------------------------------------
def test_unknown_route_is_json_404(http: httpx.Client) -> None:
    err = assert_error_body(http.get("/v1/does-not-exist"), 404, "RESOURCE_NOT_FOUND")
    assert err["type"] == "not_found_error"
    assert_error_body(http.post("/nothing/here", json={}), 404, "RESOURCE_NOT_FOUND")


def test_wrong_method_is_json_405(http: httpx.Client) -> None:
    response = http.get("/v1/chat/completions")
    assert_error_body(response, 405, "VALIDATION_METHOD_NOT_ALLOWED")
    assert "POST" in response.headers["allow"]


def test_client_request_id_is_echoed(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", json={"model": STUB_MODEL, "messages": []}, headers={"x-request-id": "e2e-trace-123"}
    )
    assert assert_error_body(response, 400, "VALIDATION_ERROR")["request_id"] == "e2e-trace-123"
    ok = http.get("/health", headers={"x-request-id": "e2e-trace-456"})
    assert ok.headers["x-request-id"] == "e2e-trace-456"
    fresh = http.get("/health")
    assert fresh.headers["x-request-id"] and fresh.headers["x-request-id"] != "e2e-trace-456"

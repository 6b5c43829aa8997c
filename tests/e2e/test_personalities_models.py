"""Personalities and model selection, through the openai SDK and raw HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e.conftest import LOCAL_MODEL, STUB_MODEL, assert_error_body, user
from tests.support.procs import StubLLMServer


# --- personalities ------------------------------------------------------------------------------
def test_personality_system_prompt(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    reply = client.chat.completions.create(
        model=STUB_MODEL, messages=user("SYSTEM?"), extra_body={"cozy": {"personality_id": "voice-concierge"}}
    )
    assert reply.choices[0].message.content.startswith("You are the CozyEngine voice concierge")
    assert reply.model_extra["cozy"]["personality_id"] == "voice-concierge"
    (sent,) = upstream.requests()
    system = [m for m in sent["messages"] if m["role"] == "system"]
    assert len(system) == 1 and sent["messages"][0] == system[0]
    assert reply.choices[0].message.content == system[0]["content"]


def test_default_personality_is_assistant(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=STUB_MODEL, messages=user("SYSTEM?"))
    assert reply.choices[0].message.content.startswith("You are Cozy,")
    assert reply.model_extra["cozy"]["personality_id"] == "assistant"


def test_unknown_personality_is_404(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model=STUB_MODEL, messages=user("hi"), extra_body={"cozy": {"personality_id": "no-such-one"}}
        )
    err = info.value
    assert err.status_code == 404
    assert err.code == "RESOURCE_NOT_FOUND"
    assert err.type == "not_found_error"
    assert err.param == "cozy.personality_id"
    assert isinstance(err.body, dict)
    assert err.body["request_id"] and err.body["request_id"] == err.response.headers["x-request-id"]
    assert upstream.requests() == []  # refused before the model was called


def test_personality_endpoints(http: httpx.Client) -> None:
    listing = http.get("/v1/personalities")
    assert listing.status_code == 200
    body = listing.json()
    assert body["object"] == "list"
    ids = [p["id"] for p in body["data"]]
    assert {"assistant", "voice-concierge"} <= set(ids)
    one = http.get("/v1/personalities/voice-concierge")
    assert one.status_code == 200 and one.json()["id"] == "voice-concierge"
    assert_error_body(http.get("/v1/personalities/no-such-one"), 404, "RESOURCE_NOT_FOUND")


# --- models ----------------------------------------------------------------------------------
def test_models_list(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    ids = [m.id for m in models]
    assert STUB_MODEL in ids and LOCAL_MODEL in ids
    assert len(ids) == len(set(ids))
    for m in models:
        assert m.object == "model"
        assert type(m.created) is int and m.created > 1_600_000_000
        assert isinstance(m.owned_by, str) and m.owned_by


def test_models_retrieve(client: openai.OpenAI) -> None:
    model = client.models.retrieve(STUB_MODEL)
    assert model.id == STUB_MODEL and model.object == "model" and type(model.created) is int
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("nope")
    assert info.value.status_code == 404
    assert info.value.code == "RESOURCE_MODEL_NOT_FOUND"
    assert info.value.body["request_id"] == info.value.response.headers["x-request-id"]


def test_unknown_model_falls_back(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    reply = client.chat.completions.create(model="gpt-unknown", messages=user("fallback please"))
    assert reply.model == STUB_MODEL
    assert reply.choices[0].message.content == "Echo: fallback please"
    chunks = list(client.chat.completions.create(model="gpt-unknown", messages=user("fallback"), stream=True))
    assert {c.model for c in chunks} == {STUB_MODEL}
    assert [r["model"] for r in upstream.requests()] == [STUB_MODEL, STUB_MODEL]


def test_named_model_is_used(client: openai.OpenAI, upstream: StubLLMServer) -> None:
    reply = client.chat.completions.create(model=STUB_MODEL, messages=user("named"))
    assert reply.model == STUB_MODEL
    (sent,) = upstream.requests()
    assert sent["model"] == STUB_MODEL

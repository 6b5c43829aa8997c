"""Realtime client events are checked by shape before a handler runs (client_events.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from cozy_actors.realtime.client_events import CLIENT_EVENTS, describe, param_of
from cozy_actors.realtime.config import SessionConfig
from cozy_actors.realtime.items import RealtimeError


def _problem(event: dict[str, Any]) -> tuple[str, str, str]:
    with pytest.raises(ValidationError) as info:
        CLIENT_EVENTS[event["type"]].model_validate(event)
    return describe(info.value)


def test_params_name_the_field_as_the_client_wrote_it() -> None:
    assert param_of(("item", "content", 0, "text")) == "item.content[0].text"
    assert param_of(("max_output_tokens", "constrained-int")) == "max_output_tokens"
    assert param_of(("voice", "str")) == "voice"


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": 5}]},
            },
            "invalid_value",
            "item.content[0].text",
        ),
        ({"type": "conversation.item.create", "item": {"type": "message", "id": {}}}, "invalid_value", "item.id"),
        (
            {"type": "conversation.item.create", "item": {"type": "message"}, "previous_item_id": []},
            "invalid_value",
            "previous_item_id",
        ),
        ({"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": True}, "invalid_value", "audio_end_ms"),
        ({"type": "conversation.item.truncate", "item_id": "x"}, "missing_required_parameter", "audio_end_ms"),
        ({"type": "input_audio_buffer.commit", "extra": 1}, "unknown_parameter", "extra"),
        (
            {"type": "response.create", "response": {"output_modalities": []}},
            "invalid_value",
            "response.output_modalities",
        ),
    ],
)
def test_bad_events_are_named(event: dict[str, Any], code: str, param: str) -> None:
    _, got_code, got_param = _problem(event)
    assert (got_code, got_param) == (code, param)


def test_session_config_refuses_unknown_and_mistyped_fields_by_name() -> None:
    for update, param in (
        ({"foo": {"deep": 1}}, "session.foo"),
        ({"max_output_tokens": True}, "session.max_output_tokens"),
        ({"audio": {"input": {"format": {"type": "audio/wav"}}}}, "session.audio.input.format.type"),
    ):
        with pytest.raises(RealtimeError) as info:
            SessionConfig().merged(update)
        assert info.value.param == param
    assert SessionConfig().merged({"tracing": "auto", "max_output_tokens": 5}).max_output_tokens == 5


def test_session_echo_keeps_to_what_framework_clients_model() -> None:
    """Pipecat 1.14 rebuilds the echoed transcription with an __init__ taking model/language/prompt
    only (any other key killed its session); its default model name is accepted as the bundled STT."""
    update = {"audio": {"input": {"transcription": {"model": "gpt-realtime-whisper", "delay": None}}}}
    wire = SessionConfig().merged(update).wire("sess_1")
    assert wire["audio"]["input"]["transcription"] == {
        "model": "gpt-realtime-whisper",
        "language": None,
        "prompt": None,
    }
    with pytest.raises(RealtimeError) as err:
        SessionConfig().merged({"audio": {"input": {"transcription": {"delay": "low"}}}})
    assert err.value.param == "session.audio.input.transcription.delay"

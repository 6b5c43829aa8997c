"""turn_detection as GA defines it: server_vad and semantic_vad are two shapes (a discriminated
union), switching kinds takes the new kind's defaults, and each refuses the other's fields."""

from __future__ import annotations

import pytest

from cozy_actors.realtime.config import SemanticVad, ServerVad, SessionConfig
from cozy_actors.realtime.items import RealtimeError


def td_update(td: object) -> dict:
    return {"audio": {"input": {"turn_detection": td}}}


def test_switching_kinds_and_partial_updates() -> None:
    cfg = SessionConfig().merged(td_update({"type": "server_vad", "silence_duration_ms": 200}))
    semantic = cfg.merged(td_update({"type": "semantic_vad"})).audio.input.turn_detection
    assert semantic == SemanticVad()  # no server_vad field carried over
    cfg = cfg.merged(td_update({"type": "semantic_vad", "eagerness": "high"}))
    cfg = cfg.merged(td_update({"create_response": False}))  # same kind: fields merge
    td = cfg.audio.input.turn_detection
    assert isinstance(td, SemanticVad) and td.eagerness == "high" and td.create_response is False
    back = cfg.merged(td_update({"type": "server_vad", "idle_timeout_ms": 5000})).audio.input.turn_detection
    assert back == ServerVad(idle_timeout_ms=5000)
    assert cfg.wire("sess")["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "high",
        "create_response": False,
        "interrupt_response": True,
    }


@pytest.mark.parametrize(
    ("td", "param", "code"),
    [
        ({"type": "semantic_vad", "threshold": 0.3}, "threshold", "unknown_parameter"),
        ({"type": "semantic_vad", "prefix_padding_ms": 100}, "prefix_padding_ms", "unknown_parameter"),
        ({"type": "semantic_vad", "idle_timeout_ms": 5000}, "idle_timeout_ms", "unknown_parameter"),
        ({"type": "semantic_vad", "eagerness": "fast"}, "eagerness", "invalid_value"),
        ({"type": "server_vad", "eagerness": "low"}, "eagerness", "unknown_parameter"),
        ({"type": "server_vad", "idle_timeout_ms": 0}, "idle_timeout_ms", "invalid_value"),
        ({"type": "vad"}, "", "invalid_value"),
    ],
)
def test_refused_fields_are_named(td: dict, param: str, code: str) -> None:
    with pytest.raises(RealtimeError) as err:
        SessionConfig().merged(td_update(td))
    where = "session.audio.input.turn_detection" + (f".{param}" if param else "")
    assert err.value.param == where and err.value.code == code
    assert f"'{where}'" in err.value.message

"""The WebSocket transport hands well-formed `input_audio_buffer.append`s to the actor as bytes
(cozy_http/realtime/transport.py `_plain_append`): it must take exactly the appends the session's
own checks accept, decode them to the same bytes, and leave every other event (each one the session
answers with an error) to the session, so that behaviour and error events stay as they were."""

from __future__ import annotations

import base64
import binascii
import os
import random
from typing import Any

import pytest
from pydantic import ValidationError

from cozy_actors.config.limits import RealtimeLimitsConfig
from cozy_actors.realtime.client_events import CLIENT_EVENTS
from cozy_actors.realtime.items import RealtimeError
from cozy_actors.realtime.limits import check_event
from cozy_http.realtime.transport import _plain_append

LIMITS = RealtimeLimitsConfig(max_audio_append_bytes=4096)
APPEND = "input_audio_buffer.append"


def _session_accepts(event: Any) -> bytes | None:
    """What RealtimeSession.handle + audio_append + append_audio (audio/pcm) do: the bytes, or None
    for an event they answer with an error."""
    if not isinstance(event, dict) or event.get("type") != APPEND:
        return None
    try:
        CLIENT_EVENTS[APPEND].model_validate(event)
        check_event(APPEND, event, LIMITS)
        data = base64.b64decode(event["audio"], validate=True)
    except (ValidationError, RealtimeError, binascii.Error, ValueError):
        return None
    return None if len(data) % 2 else data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


CASES: list[Any] = [
    {"type": APPEND, "audio": _b64(b"\1\2" * 960)},
    {"type": APPEND, "audio": _b64(b"\1\2" * 960), "event_id": "e1"},
    {"type": APPEND, "audio": _b64(b"\1\2" * 960), "event_id": None},
    {"type": APPEND, "audio": ""},
    {"type": APPEND, "audio": _b64(os.urandom(4096))},
    {"type": APPEND, "audio": _b64(os.urandom(4098))},  # over max_audio_append_bytes
    {"type": APPEND, "audio": _b64(b"\1\2\3")},  # odd byte count
    {"type": APPEND, "audio": "***"},
    {"type": APPEND, "audio": "AAA"},  # bad padding
    {"type": APPEND, "audio": "AA==AA=="},  # data after padding
    {"type": APPEND, "audio": "AA AA\n=="},  # whitespace: refused by validate=True
    {"type": APPEND, "audio": "ÄÄÄÄ"},
    {"type": APPEND, "audio": 5},
    {"type": APPEND, "audio": [_b64(b"\0\0")]},
    {"type": APPEND},
    {"type": APPEND, "audio": _b64(b"\0\0"), "event_id": "x" * 513},
    {"type": APPEND, "audio": _b64(b"\0\0"), "event_id": 7},
    {"type": APPEND, "audio": _b64(b"\0\0"), "extra": 1},
    {"type": "input_audio_buffer.commit"},
    {"type": [APPEND], "audio": _b64(b"\0\0")},
    [APPEND],
    "input_audio_buffer.append",
]


@pytest.mark.parametrize("event", CASES)
def test_the_fast_path_takes_exactly_what_the_session_accepts(event: Any) -> None:
    assert _plain_append(event, LIMITS.max_audio_append_bytes) == _session_accepts(event)


def test_random_base64_like_strings_agree_with_the_session() -> None:
    rng = random.Random(11)
    alphabet = "AB+/=a0 \n-_"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        event = {"type": APPEND, "audio": text}
        assert _plain_append(event, LIMITS.max_audio_append_bytes) == _session_accepts(event), text

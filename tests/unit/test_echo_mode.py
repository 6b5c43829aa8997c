"""Who gets echo cancellation: the query value, else the personality's `voice.echo_cancellation`;
`auto` means on only where the server owns playback (WebRTC/FastRTC calls)."""

from __future__ import annotations

import pydantic
import pytest

from cozy_actors.personalities import VoicePolicy
from cozy_actors.realtime.service import _echo_on
from cozy_media.audio import echo


@pytest.mark.skipif(not echo.available(), reason="the livekit wheel is not installed")
@pytest.mark.parametrize(
    ("mode", "server_playback", "on"),
    [("auto", True, True), ("auto", False, False), ("on", False, True), ("off", True, False)],
)
def test_mode_and_transport_decide(mode: str, server_playback: bool, on: bool) -> None:
    assert _echo_on(mode, server_playback) is on


def test_personality_default_and_bad_value() -> None:
    assert VoicePolicy().echo_cancellation == "off"  # opt-in for now (see VoicePolicy)
    with pytest.raises(pydantic.ValidationError):
        VoicePolicy(echo_cancellation="yes")

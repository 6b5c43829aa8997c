"""The echo guard on a WebRTC call (`cozy_echo_cancellation=auto`: on where the server owns playback): an aiortc
caller on a speakerphone, whose microphone hears the reply it plays 60 ms later at -10 dB, through
Opus both ways. The echo must not interrupt the reply; the caller talking over it still does."""

from __future__ import annotations

import asyncio

import numpy as np

from tests.e2e.conftest import ADMIN_KEY, CozyServer
from tests.webrtc.conftest import speak
from tests.webrtc.rtc_client import Call

LONG = "Please tell me a long story about the weather in the mountains, with sun, wind and a little rain."


async def _speakerphone_call(server: CozyServer, **query: str) -> Call:
    call = Call(server.root_url, ADMIN_KEY, echo_db=-10.0, **{"cozy_echo_cancellation": "auto", **query})
    response = await call.offer()
    assert response.status_code == 200 and response.json()["type"] == "answer", response.text
    await call.connected()
    return call


async def test_speakerphone_echo_does_not_interrupt_the_reply(rtc_server: CozyServer) -> None:
    question = speak(rtc_server, LONG)
    call = await _speakerphone_call(rtc_server)
    try:
        await asyncio.sleep(0.3)
        call.mic.say(question)
        await call.mic.done.wait()
        end = call.mic.speech_ended_at or 0.0
        first = await call.speaker.wait_loud(end, timeout=20)
        last = await call.speaker.wait_quiet(first, quiet_s=1.5, timeout=40)
        # "Echo: <the question>" in full: as long as the question itself (its clip, less silences).
        spoken_s = len(question) / 48000
        print(f"\nWebRTC speakerphone: reply played {last - first:.2f} s (question clip {spoken_s:.2f} s)")
        assert last - first > 0.8 * spoken_s, "the reply was cut short"
        await asyncio.sleep(1.0)
        assert call.logs().count("started_talking") == 1  # the question only, never the echo
    finally:
        await call.close()


async def test_speakerphone_caller_still_interrupts(rtc_server: CozyServer, question: np.ndarray) -> None:
    call = await _speakerphone_call(rtc_server)
    try:
        await asyncio.sleep(0.3)
        call.mic.say(speak(rtc_server, LONG))
        await call.mic.done.wait()
        first = await call.speaker.wait_loud(call.mic.speech_ended_at or 0, timeout=20)
        await asyncio.sleep(1.5)  # well into the reply, its echo coming back all along
        assert call.logs().count("started_talking") == 1  # the echo did not interrupt it
        call.mic.say(question)  # the caller talks over it
        await call.mic.done.wait()
        onset, end = call.mic.speech_started_at, call.mic.speech_ended_at
        assert onset is not None and end is not None
        assert [t for t in call.speaker.loud(first) if onset - 0.3 <= t <= onset], "the reply was not playing"
        during = [t for t in call.speaker.loud(first) if onset <= t <= end]
        stopped = (during[-1] - onset) if during else 0.0
        print(f"\nWebRTC speakerphone barge-in: caller's onset -> reply audio stops: {stopped * 1000:.0f} ms")
        assert stopped < 0.8, "the reply kept playing over the caller"
        assert call.logs().count("started_talking") >= 2
    finally:
        await call.close()


async def test_without_echo_cancellation_the_echo_interrupts(rtc_server: CozyServer) -> None:
    """The control: the same speakerphone with `cozy_echo_cancellation=off` interrupts itself."""
    call = await _speakerphone_call(rtc_server, cozy_echo_cancellation="off")
    try:
        await asyncio.sleep(0.3)
        call.mic.say(speak(rtc_server, LONG))
        await call.mic.done.wait()
        await call.speaker.wait_loud(call.mic.speech_ended_at or 0, timeout=20)
        for _ in range(200):  # up to 10 s: the reply's own echo starts a "turn" of the caller
            if call.logs().count("started_talking") >= 2:
                break
            await asyncio.sleep(0.05)
        assert call.logs().count("started_talking") >= 2
    finally:
        await call.close()

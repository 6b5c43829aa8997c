"""Pause-then-decide over a FastRTC call (the default where the server controls playback): a
"yeah" over the reply pauses it and it plays on from where it stopped, its whole text delivered
once and no new reply started; the interruption's cozy.* events stay off the data channel."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import CozyServer
from tests.e2e.test_realtime_turns import espeak_pcm24
from tests.webrtc.conftest import speak
from tests.webrtc.rtc_client import to_48k
from tests.webrtc.test_webrtc import connect

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"),
]

ASK = "Please tell me a long story about a small cat who lived in a quiet house by the sea."


def quiet_gaps(times: list[float], after: float, longer_than: float) -> list[tuple[float, float]]:
    """Stretches with no loud speaker frame, longer than `longer_than` s, after `after`."""
    ts = [t for t in times if t >= after]
    return [(a, b) for a, b in itertools.pairwise(ts) if b - a > longer_than]


async def test_backchannel_over_a_reply_resumes_it(rtc_server: CozyServer, tmp_path: Path) -> None:
    ask: np.ndarray = speak(rtc_server, ASK)
    yeah = to_48k(espeak_pcm24("yeah", tmp_path))
    call = await connect(rtc_server)
    try:
        await asyncio.sleep(0.3)
        call.mic.say(ask)
        await call.mic.done.wait()
        first = await call.speaker.wait_loud(call.mic.speech_ended_at or 0, timeout=30)
        await asyncio.sleep(1.5)  # into the reply (about 6 s long)
        call.mic.say(yeah)
        await call.mic.done.wait()
        onset = call.mic.speech_started_at
        assert onset is not None
        last = await call.speaker.wait_quiet(onset, quiet_s=2.5, timeout=40)
        loud = call.speaker.loud(first)
        gaps = quiet_gaps(loud, onset - 0.2, 0.3)
        assert gaps, "the reply did not pause for the caller's speech"
        assert last > gaps[0][1] + 1.0, "the reply did not play on after the pause"
        await asyncio.sleep(1.0)
        said = [m["transcript"] for m in call.logs() if isinstance(m, dict) and m.get("role") == "user"]
        replies = [m["transcript"] for m in call.logs() if isinstance(m, dict) and m.get("role") == "assistant"]
        assert len(replies) == 1 and said, (said, replies)
        assert replies[0] == f"Echo: {said[0]}"  # the whole reply, not cut where it paused
        assert [m for m in call.logs() if m == "response_starting"] == ["response_starting"]
        assert not [m for m in call.messages if str(m.get("type", "")).startswith("cozy.")]
        # Resumed as a false interruption: "backchannel" by its words, or "noise" when the VAD timed
        # espeak's short "yeah" under min_speech_ms (it is borderline: both were seen).
        assert rtc_server.metric("cozy_interruptions_resumed_total") >= 1
    finally:
        await call.close()

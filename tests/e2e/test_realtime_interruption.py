"""Pause-then-decide barge-in over WS /v1/realtime (`?cozy_interruption=pause`), on the bundled
VAD/STT/TTS and real speech from espeak-ng: a noise burst and an "mm-hmm" over a reply resume it
from the first unheard sample (its full text delivered and stored once, no new response); a real
"stop, tell me something else" cancels and truncates it; a client truncate wins; the default
(cancel) mode is the plain barge-in with no cozy.* events."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from tests.e2e.conftest import ADMIN_KEY, CozyServer
from tests.support.events import Recorder

from .realtime_support import FRAME, silence
from .test_realtime_turns import espeak_pcm24, needs_espeak

pytestmark = [pytest.mark.timeout(120), needs_espeak]

VAD = {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 300, "threshold": 0.5}
LONG = " ".join(["This is a long answer that keeps going for quite a while."] * 6)


class Conn(Recorder[dict[str, Any]]):
    """A raw Realtime WebSocket: every event kept with its arrival time; a paced microphone."""

    timeout = 30.0

    def __init__(self, ws: Any) -> None:
        super().__init__()
        self.ws = ws
        self.follow(ws, json.loads)
        self._mic: asyncio.Task[None] | None = None

    def story(self) -> list[str]:
        """The non-audio events, short: what a failing assertion prints."""
        keep = ("cozy.", "input_audio_buffer.", "conversation.item.input_audio_transcription.completed")
        keep += ("response.done", "conversation.item.deleted")
        out = []
        for t, e in self.items:
            if e["type"].startswith(keep):
                extra = {k: e[k] for k in ("reason", "transcript", "audio_end_ms", "audio_start_ms") if k in e}
                out.append(f"{t:.2f} {e['type']} {extra}")
        return out

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    def speak(self, pcm: bytes) -> None:
        """Microphone: `pcm`, then room silence until closed, in 100 ms frames at real time."""

        async def run() -> None:
            at = 0
            while True:
                frame = pcm[at : at + FRAME] if at < len(pcm) else silence(100)
                at += FRAME
                await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(frame).decode()})
                await asyncio.sleep(0.1)

        self._mic = asyncio.create_task(run())

    async def close(self) -> None:
        if self._mic is not None:
            self._mic.cancel()
        await super().close()


async def open_conn(server: CozyServer, sid: str, **query: str) -> tuple[Any, Conn]:
    q = "&".join(f"{k}={v}" for k, v in {"model": "stub-model", "cozy_session_id": sid, **query}.items())
    url = server.base_url.replace("http://", "ws://") + f"/realtime?{q}"
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {ADMIN_KEY}"}, max_size=None)
    c = Conn(ws)
    await c.wait("session.created")
    session = {"type": "realtime", "audio": {"input": {"turn_detection": VAD}}}
    await c.send({"type": "session.update", "session": session})
    await c.wait("session.updated")
    return ws, c


async def start_reply(c: Conn) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": LONG}]}
    await c.send({"type": "conversation.item.create", "item": item})
    await c.send({"type": "response.create"})
    await c.wait("response.output_audio.delta", 8)


def stored(server: CozyServer, sid: str) -> list[tuple[str, str]]:
    """The session's stored messages, once the reply has been written."""
    deadline = time.monotonic() + 5
    while True:
        r = httpx.get(
            f"{server.base_url}/chat/sessions/{sid}/messages",
            params={"limit": 50},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        got = [(m["role"], m["content"]) for m in r.json()["data"]] if r.status_code == 200 else []
        if (got and got[-1][0] == "assistant") or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def burst_pcm(tmp: Path) -> bytes:
    """A cough-like burst: a voiced "hah" cut to 220 ms, with noise on it (the VAD fires; too
    short to be speech meant for the bot)."""
    voiced = np.frombuffer(espeak_pcm24("hah", tmp), dtype="<i2")
    start = int(np.nonzero(np.abs(voiced.astype(np.int32)) > 300)[0][0])
    x = voiced[start : start + int(0.22 * 24000)].astype(np.float64)
    x += np.random.default_rng(7).normal(0, 2000, x.size)
    return np.clip(x * 1.5, -32000, 32000).astype("<i2").tobytes()


def delta_bytes(events: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta")


def assert_resumed_exactly(c: Conn) -> None:
    """The audio after `resumed` starts at the paused event's audio_end_ms: the very samples
    that had been sent as lead (no repeat, no gap), and no audio left while paused."""
    evs = c.events
    p = next(i for i, e in enumerate(evs) if e["type"] == "cozy.response.paused")
    r = next(i for i, e in enumerate(evs) if e["type"] == "cozy.response.resumed")
    assert not delta_bytes(evs[p:r]), "audio left while paused"
    before, after = delta_bytes(evs[:p]), delta_bytes(evs[r:])
    end = evs[p]["audio_end_ms"] * 48  # PCM16 24 kHz: 48 bytes a ms
    assert 0 < end < len(before), (end, len(before))  # the lead had been sent, not heard
    overlap = before[end:]
    assert after[: len(overlap)] == overlap


@pytest.fixture()
def tmp(tmp_path: Path) -> Path:
    return tmp_path


async def test_noise_and_backchannel_resume_the_reply(cozy_server: CozyServer, tmp: Path) -> None:
    sid = f"rt-int-{uuid.uuid4().hex[:10]}"
    ws, c = await open_conn(cozy_server, sid, cozy_interruption="pause")
    try:
        await start_reply(c)
        c.speak(burst_pcm(tmp) + silence(1500) + espeak_pcm24("yeah", tmp))
        paused = await c.wait("cozy.response.paused")
        assert paused[0]["response_id"] == c.of("response.created")[0]["response"]["id"]
        done = (await c.wait("response.done", timeout=60))[0]
        assert done["response"]["status"] == "completed", "\n".join(c.story())
        resumed = c.of("cozy.response.resumed")
        assert resumed and {r["reason"] for r in resumed} <= {"noise", "no_words", "backchannel"}, resumed
        assert len(c.of("cozy.response.paused")) == len(resumed) >= 1
        assert not c.of("cozy.response.interrupted")
        full = "Echo: " + LONG
        assert c.of("response.output_audio_transcript.done")[0]["transcript"] == full
        first_pause = c.times("cozy.response.paused")[0]
        started = c.times("input_audio_buffer.speech_started")[0]
        audio_times = c.times("response.output_audio.delta")
        assert not [t for t in audio_times if started + 0.1 < t < first_pause], "audio after speech_started"
        assert_resumed_exactly(c)
        await asyncio.sleep(1.0)  # a late final must not start a response either
        assert len(c.of("response.created")) == 1
        deleted = {e["item_id"] for e in c.of("conversation.item.deleted")}
        committed = {e["item_id"] for e in c.of("input_audio_buffer.committed")}
        assert committed and committed <= deleted  # the noise / backchannel items left the conversation
        assert stored(cozy_server, sid) == [("user", LONG), ("assistant", full)]
        assert cozy_server.metric("cozy_interruptions_resumed_total", reason=resumed[0]["reason"]) >= 1
    finally:
        await c.close()
        await ws.close()


async def test_real_interruption_cancels_and_truncates(cozy_server: CozyServer, tmp: Path) -> None:
    sid = f"rt-int-{uuid.uuid4().hex[:10]}"
    ws, c = await open_conn(cozy_server, sid, cozy_interruption="pause")
    try:
        await start_reply(c)
        c.speak(espeak_pcm24("stop, tell me something else", tmp))
        await c.wait("cozy.response.paused")
        interrupted = (await c.wait("cozy.response.interrupted"))[0]
        done = (await c.wait("response.done"))[0]
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"]["reason"] == "turn_detected"
        heard = done["response"]["output"][0]["content"][0]["transcript"]
        assert heard and len(heard) < len("Echo: " + LONG)
        assert "something" in interrupted["transcript"].lower() or "tell" in interrupted["transcript"].lower()
        said = (await c.wait("conversation.item.input_audio_transcription.completed"))[0]["transcript"]
        second = (await c.wait("response.done", 2, timeout=60))[1]  # the user's words are answered
        assert second["response"]["status"] == "completed"
        assert not c.of("cozy.response.resumed")
        rows = stored(cozy_server, sid)
        assert rows[:3] == [("user", LONG), ("assistant", heard), ("user", said)], rows
        assert rows[3][0] == "assistant" and rows[3][1].startswith("Echo:")
    finally:
        await c.close()
        await ws.close()


async def test_client_truncate_wins_over_a_pause(cozy_server: CozyServer, tmp: Path) -> None:
    sid = f"rt-int-{uuid.uuid4().hex[:10]}"
    ws, c = await open_conn(cozy_server, sid, cozy_interruption="pause")
    try:
        await start_reply(c)
        c.speak(espeak_pcm24("mm-hmm", tmp))
        paused = (await c.wait("cozy.response.paused"))[0]
        await c.send(
            {
                "type": "conversation.item.truncate",
                "item_id": paused["item_id"],
                "content_index": 0,
                "audio_end_ms": paused["audio_end_ms"],
            }
        )
        done = (await c.wait("response.done"))[0]
        assert done["response"]["status"] == "cancelled"
        assert c.of("cozy.response.interrupted") and not c.of("cozy.response.resumed")
        assert c.of("conversation.item.truncated")[0]["audio_end_ms"] == paused["audio_end_ms"]
    finally:
        await c.close()
        await ws.close()


async def test_default_websocket_mode_is_a_plain_cancel(cozy_server: CozyServer, tmp: Path) -> None:
    sid = f"rt-int-{uuid.uuid4().hex[:10]}"
    ws, c = await open_conn(cozy_server, sid)
    try:
        await start_reply(c)
        c.speak(espeak_pcm24("mm-hmm", tmp))
        await c.wait("input_audio_buffer.speech_started")
        started = c.times("input_audio_buffer.speech_started")[0]
        done = (await c.wait("response.done"))[0]
        assert done["response"]["status"] == "cancelled"
        assert c.times("response.output_audio.delta")[-1] <= started + 0.05
        await c.wait("conversation.item.input_audio_transcription.completed")
        assert not [e for e in c.events if e["type"].startswith("cozy.")]
    finally:
        await c.close()
        await ws.close()


async def test_session_settings_from_the_query(cozy_server: CozyServer, tmp: Path) -> None:
    """No backchannel words, min_words 1, min_speech_ms 0 for this connection: its "yeah" (under
    300 ms of speech) is a real interruption."""
    sid = f"rt-int-{uuid.uuid4().hex[:10]}"
    query = {"cozy_interruption": "pause", "cozy_interruption_backchannels": "", "cozy_interruption_min_words": "1"}
    query["cozy_interruption_min_speech_ms"] = "0"
    ws, c = await open_conn(cozy_server, sid, **query)
    try:
        await start_reply(c)
        c.speak(espeak_pcm24("yeah", tmp))
        await c.wait("cozy.response.paused")
        interrupted = (await c.wait("cozy.response.interrupted"))[0]
        assert "yeah" in interrupted["transcript"].lower(), "\n".join(c.story())
        assert (await c.wait("response.done"))[0]["response"]["status"] == "cancelled"
    finally:
        await c.close()
        await ws.close()


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("cozy_interruption=maybe", "cozy_interruption"),
        ("cozy_interruption=pause&cozy_interruption_min_words=0", "cozy_interruption_min_words"),
        ("cozy_interruption_resume_after_ms=soon", "cozy_interruption_resume_after_ms"),
    ],
)
async def test_bad_interruption_settings_are_refused(cozy_server: CozyServer, query: str, param: str) -> None:
    url = cozy_server.base_url.replace("http://", "ws://") + f"/realtime?model=stub-model&{query}"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as ws:
        event = json.loads(await ws.recv())
        assert event["type"] == "error" and event["error"]["param"] == param, event

"""CallBridge (the WebRTC call's glue to its Realtime actor) and the `api.webrtc` config, without fastrtc:
a real actor under a real supervisor stands in for the Realtime one and records what it is told."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from cozy_actors.config.models import ApiConfig, WebRTCConfig
from cozy_actors.realtime.actor import AppendAudio, ClientEvent
from cozy_actors.runtime import Actor, StopReason, Supervisor
from cozy_http.webrtc.bridge import CLOSE, MAX_QUEUED_CHUNKS, CallBridge


class Recorder(Actor):
    kind = "test-realtime"

    def __init__(self, actor_id: str, inbox: list[Any]) -> None:
        super().__init__(actor_id)
        self.inbox = inbox

    async def handle(self, message: Any) -> None:
        self.inbox.append(message)


class FakePeer:
    def __init__(self) -> None:
        self.cleared = 0
        self.messages: list[dict[str, Any]] = []

    def clear_output(self) -> None:
        self.cleared += 1

    def post(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


def delta(samples: int, value: int = 1000) -> dict[str, Any]:
    pcm = np.full(samples, value, dtype="<i2").tobytes()
    return {"type": "response.output_audio.delta", "delta": base64.b64encode(pcm).decode()}


@pytest.fixture
async def call() -> Any:
    supervisor = Supervisor()
    inbox: list[Any] = []
    ref = await supervisor.spawn(lambda aid: Recorder(aid, inbox), "sess_test")
    closed: list[CallBridge] = []
    bridge = CallBridge("call-1", on_closed=closed.append)
    bridge.bind(ref, {"output_modalities": ["audio"]})
    yield bridge, ref, inbox, closed
    await bridge.close("test over")
    await supervisor.shutdown()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_bind_configures_the_session_and_feed_sends_pcm(call: Any) -> None:
    bridge, _, inbox, _ = call
    frame = np.arange(960, dtype=np.int16).reshape(1, -1)  # fastrtc's (1, N) shape, already 24 kHz
    bridge.feed(frame)
    await settle()
    assert isinstance(inbox[0], ClientEvent) and inbox[0].event["type"] == "session.update"
    assert isinstance(inbox[1], AppendAudio) and inbox[1].pcm == frame.astype("<i2").tobytes()


async def test_other_input_rates_are_resampled_to_24k() -> None:
    supervisor = Supervisor()
    inbox: list[Any] = []
    ref = await supervisor.spawn(lambda aid: Recorder(aid, inbox), "sess_48k")
    bridge = CallBridge("call-48k", input_rate=48000)
    bridge.bind(ref, {})
    for _ in range(50):  # one second of 48 kHz frames
        bridge.feed(np.full((1, 960), 500, dtype=np.int16))
    await settle()
    audio = b"".join(m.pcm for m in inbox if isinstance(m, AppendAudio))
    assert 23000 < len(audio) // 2 <= 24000  # the stream filter holds back a few ms
    await bridge.close("done")
    await supervisor.shutdown()


async def test_reply_audio_is_queued_as_24k_frames_and_barge_in_drops_it(call: Any) -> None:
    bridge, _, _, _ = call
    peer = FakePeer()
    bridge.attach(peer)
    bridge.on_event(delta(2400))
    bridge.on_event(delta(2400))
    rate, chunk = bridge.out.get_nowait()
    assert rate == 24000 and chunk.shape == (1, 2400) and chunk.dtype == np.int16
    assert {"type": "log", "data": "response_starting"} in peer.messages
    bridge.on_event({"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "x"})
    assert bridge.out.empty() and peer.cleared == 1  # ours and fastrtc's queue both dropped
    bridge.on_event(delta(2400))
    bridge.on_event({"type": "response.done", "response": {"status": "cancelled"}})
    assert bridge.out.empty() and peer.cleared == 2


async def test_output_queue_is_bounded(call: Any) -> None:
    bridge, _, _, _ = call
    for _ in range(MAX_QUEUED_CHUNKS + 10):
        bridge.on_event(delta(240))
    assert bridge.out.qsize() == MAX_QUEUED_CHUNKS


async def test_events_reach_the_data_channel(call: Any) -> None:
    bridge, _, _, _ = call
    peer = FakePeer()
    bridge.attach(peer)
    bridge.on_event({"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1000, "item_id": "x"})
    bridge.on_event({"type": "conversation.item.input_audio_transcription.completed", "transcript": "hi"})
    bridge.on_event({"type": "error", "error": {"message": "nope", "code": "x"}})
    assert peer.messages == [
        {"type": "log", "data": "pause_detected"},
        {"type": "log", "data": {"role": "user", "transcript": "hi"}},
        {"type": "warning", "message": "nope"},
    ]


async def test_actor_stopping_ends_the_call(call: Any) -> None:
    bridge, ref, _, closed = call
    await ref.stop(StopReason.IDLE_TIMEOUT, "idle")
    for _ in range(20):
        await asyncio.sleep(0.01)
        if bridge.closed:
            break
    assert bridge.closed and closed == [bridge]
    assert bridge.out.get_nowait() is CLOSE
    bridge.feed(np.zeros((1, 960), dtype=np.int16))  # late frames are ignored


async def test_close_stops_the_actor_once(call: Any) -> None:
    bridge, ref, _, closed = call
    await bridge.close("peer connection closed")
    await bridge.close("again")
    assert not ref.alive and bridge.reason == "peer connection closed" and len(closed) == 1


async def test_unattached_call_expires() -> None:
    supervisor = Supervisor()
    ref = await supervisor.spawn(lambda aid: Recorder(aid, []), "sess_x")
    bridge = CallBridge("call-2")
    bridge.bind(ref, {})
    bridge.expire_unless_attached(0.05)
    await asyncio.sleep(0.2)
    assert bridge.closed and bridge.reason == "the peer never connected" and not ref.alive
    await supervisor.shutdown()


def test_webrtc_config_validation() -> None:
    assert WebRTCConfig().path == "/v1/rtc" and WebRTCConfig(ui_path="").ui_path is None
    with pytest.raises(ValidationError):
        WebRTCConfig(path="v1/rtc")
    with pytest.raises(ValidationError):
        WebRTCConfig(ui_path="/ui/")
    with pytest.raises(ValidationError):
        WebRTCConfig(ice_servers=[{"username": "u"}])
    with pytest.raises(ValidationError, match="must not be under"):
        ApiConfig(webrtc={"path": "/ui/rtc", "ui_path": "/ui"})

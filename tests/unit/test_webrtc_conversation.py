"""The /ui page's conversation view: turns from the session's events, interruption marks, latencies,
and the bridge handing the view to the peer between audio chunks (fastrtc's side data)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np

from cozy_actors.runtime import Actor, Supervisor
from cozy_http.webrtc.bridge import SHOW_EVERY_S, CallBridge
from cozy_http.webrtc.conversation import EMPTY, MAX_TURNS, Conversation


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def user_turn(conv: Conversation, item: str, words: str, *, end_ms: float, input_ms: float) -> None:
    conv.apply({"type": "input_audio_buffer.speech_started", "item_id": item, "audio_start_ms": 0}, input_ms)
    first = words.split(" ")[0]
    conv.apply({"type": "conversation.item.input_audio_transcription.delta", "item_id": item, "delta": first}, 0)
    conv.apply({"type": "input_audio_buffer.speech_stopped", "item_id": item, "audio_end_ms": end_ms}, input_ms)
    conv.apply(
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": item, "transcript": words}, 0
    )


def reply(conv: Conversation, rid: str, item: str, *pieces: str) -> None:
    conv.apply({"type": "response.created", "response": {"id": rid, "status": "in_progress"}}, 0)
    for piece in pieces:
        ev = {"type": "response.output_audio_transcript.delta", "response_id": rid, "item_id": item, "delta": piece}
        conv.apply(ev, 0)


def done(conv: Conversation, rid: str, item: str, heard: str, status: str, reason: str | None = None) -> None:
    ev = {"type": "response.output_audio_transcript.done", "response_id": rid, "item_id": item, "transcript": heard}
    conv.apply(ev, 0)
    details = {"type": status, "reason": reason} if reason else None
    conv.apply({"type": "response.done", "response": {"id": rid, "status": status, "status_details": details}}, 0)


def test_a_turn_shows_partials_finals_the_reply_and_its_latency() -> None:
    clock = Clock()
    conv = Conversation(clock)
    assert conv.html() == EMPTY
    conv.apply({"type": "input_audio_buffer.speech_started", "item_id": "u1", "audio_start_ms": 300}, 400)
    assert "listening" in conv.html()
    conv.apply({"type": "conversation.item.input_audio_transcription.delta", "item_id": "u1", "delta": "What"}, 0)
    assert 'data-role="user"' in conv.html() and "cozy-live" in conv.html() and "What" in conv.html()
    # speech ended at 2000 ms of input; 500 ms more audio had arrived when the VAD said so
    clock.now = 200.0
    conv.apply({"type": "input_audio_buffer.speech_stopped", "item_id": "u1", "audio_end_ms": 2000}, 2500)
    ev = {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1", "transcript": "What time?"}
    assert conv.apply(ev, 0)
    reply(conv, "r1", "a1", "It is ", "noon.")
    clock.now = 200.75
    assert conv.first_audio()
    done(conv, "r1", "a1", "It is noon.", "completed")
    user, assistant = conv.turns
    assert (user.role, user.text, user.final) == ("user", "What time?", True)
    assert (assistant.role, assistant.text, assistant.state, assistant.final) == ("assistant", "It is noon.", "", True)
    assert assistant.latency_ms == 1250  # 500 ms after the speech's end + 750 ms to the first audio
    page = conv.html()
    assert page.index("What time?") < page.index("It is noon.") and "reply in 1250 ms" in page
    assert not conv.first_audio()  # a response without a new utterance (a greeting) has no latency


def test_latency_before_the_reply_text_is_kept_for_it() -> None:
    clock = Clock()
    conv = Conversation(clock)
    user_turn(conv, "u1", "hello there", end_ms=1000, input_ms=1000)
    conv.apply({"type": "response.created", "response": {"id": "r1"}}, 0)
    clock.now += 0.4
    conv.first_audio()
    reply(conv, "r1", "a1", "Hi!")
    assert conv.turns[-1].latency_ms == 400


def test_barge_in_marks_the_reply_interrupted_and_strikes_the_unheard_words() -> None:
    conv = Conversation(Clock())
    user_turn(conv, "u1", "tell me a story", end_ms=1000, input_ms=1500)
    reply(conv, "r1", "a1", "Once upon a time ", "there was a <dragon>.")
    user_turn(conv, "u2", "stop", end_ms=4000, input_ms=4500)  # speech_started while r1 is live
    done(conv, "r1", "a1", "Once upon a time", "cancelled", "turn_detected")
    story = conv.turns[1]
    assert story.state == "interrupted" and story.heard == "Once upon a time"
    page = conv.html()
    assert 'data-state="interrupted"' in page and ">interrupted<" in page
    assert '<s class="cozy-unheard"> there was a &lt;dragon&gt;.</s>' in page  # escaped, struck out
    assert [t.text for t in conv.turns if t.role == "user"] == ["tell me a story", "stop"]


def test_a_client_cancel_is_not_an_interruption() -> None:
    conv = Conversation(Clock())
    reply(conv, "r1", "a1", "Hello")
    done(conv, "r1", "a1", "Hello", "cancelled", "client_cancelled")
    assert conv.turns[0].state == "cancelled" and ">cancelled<" in conv.html()


def test_pause_then_resume_marks_a_false_interruption() -> None:
    conv = Conversation(Clock())
    reply(conv, "r1", "a1", "The weather is fine ")
    conv.apply({"type": "input_audio_buffer.speech_started", "item_id": "u9", "audio_start_ms": 0}, 0)
    conv.apply({"type": "cozy.response.paused", "response_id": "r1", "item_id": "a1", "audio_end_ms": 1200}, 0)
    assert conv.turns[0].state == "paused" and "paused: you spoke" in conv.html()
    conv.apply({"type": "input_audio_buffer.speech_stopped", "item_id": "u9", "audio_end_ms": 1500}, 1500)
    conv.apply({"type": "conversation.item.input_audio_transcription.completed", "item_id": "u9", "transcript": ""}, 0)
    resumed = {
        "type": "cozy.response.resumed",
        "response_id": "r1",
        "item_id": "a1",
        "reason": "noise",
        "transcript": "",
    }
    conv.apply(resumed, 0)
    conv.apply(
        {"type": "response.output_audio_transcript.delta", "response_id": "r1", "item_id": "a1", "delta": "today."}, 0
    )
    done(conv, "r1", "a1", "The weather is fine today.", "completed")
    assert [t.role for t in conv.turns] == ["assistant"]  # the noise left no user turn
    turn = conv.turns[0]
    assert turn.state == "resumed" and turn.text == "The weather is fine today." and turn.heard is None
    assert "false interruption (noise), resumed" in conv.html()
    assert not conv.first_audio()  # the noise started no turn: no latency to measure


def test_pause_then_interrupt_marks_a_real_interruption() -> None:
    conv = Conversation(Clock())
    reply(conv, "r1", "a1", "Let me explain the whole thing")
    conv.apply({"type": "input_audio_buffer.speech_started", "item_id": "u2", "audio_start_ms": 0}, 0)
    conv.apply({"type": "cozy.response.paused", "response_id": "r1", "item_id": "a1", "audio_end_ms": 800}, 0)
    ev = {"type": "cozy.response.interrupted", "response_id": "r1", "item_id": "a1", "transcript": "no wait"}
    conv.apply(ev, 0)
    done(conv, "r1", "a1", "Let me explain", "cancelled", "turn_detected")
    assert conv.turns[0].state == "interrupted" and "cozy-interrupted" in conv.html()


def test_failed_transcription_and_bounded_history() -> None:
    conv = Conversation(Clock())
    conv.apply({"type": "input_audio_buffer.speech_started", "item_id": "u1"}, 0)
    conv.apply({"type": "conversation.item.input_audio_transcription.failed", "item_id": "u1"}, 0)
    assert conv.turns[0].state == "failed" and "not understood" in conv.html()
    for i in range(MAX_TURNS + 5):
        conv.apply({"type": "conversation.item.input_audio_transcription.delta", "item_id": f"x{i}", "delta": "a"}, 0)
    assert len(conv.turns) == MAX_TURNS and conv.turns[-1].item_id == f"x{MAX_TURNS + 4}"
    assert not conv.apply({"type": "session.updated"}, 0)


class Idle(Actor):
    kind = "test-realtime"

    async def handle(self, message: Any) -> None:
        pass


class ViewPeer:
    def __init__(self) -> None:
        self.cleared = 0

    def clear_output(self) -> None:
        self.cleared += 1

    def post(self, message: dict[str, Any]) -> None:
        pass

    def side_output(self, html: str) -> tuple[str, str]:
        return ("view", html)


def audio_delta(samples: int) -> dict[str, Any]:
    pcm = np.full(samples, 1000, dtype="<i2").tobytes()
    return {"type": "response.output_audio.delta", "delta": base64.b64encode(pcm).decode()}


async def test_bridge_puts_the_view_between_audio_chunks_only_for_page_calls() -> None:
    supervisor = Supervisor()
    ref = await supervisor.spawn(lambda aid: Idle(aid), "sess_view")
    api_call, page_call = CallBridge("call-api"), CallBridge("call-page")
    for bridge in (api_call, page_call):
        bridge.bind(ref, None)
    api_call.attach(ViewPeer())
    page_call.attach(ViewPeer(), show_conversation=True)
    for _ in range(50):  # 2 s of microphone frames: the VAD clock
        for bridge in (api_call, page_call):
            bridge.feed(np.zeros((1, 960), dtype=np.int16))
    events = [
        {"type": "input_audio_buffer.speech_started", "item_id": "u1", "audio_start_ms": 100},
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1", "transcript": "Hi <b>"},
        {"type": "input_audio_buffer.speech_stopped", "item_id": "u1", "audio_end_ms": 1700},
        {"type": "response.created", "response": {"id": "r1"}},
        {"type": "response.output_audio_transcript.delta", "response_id": "r1", "item_id": "a1", "delta": "Hello!"},
        audio_delta(2400),
        audio_delta(2400),
    ]
    for bridge in (api_call, page_call):
        for ev in events:
            bridge.on_event(ev)
    await asyncio.sleep(SHOW_EVERY_S * 2)
    api_items = [api_call.out.get_nowait() for _ in range(api_call.out.qsize())]
    assert all(isinstance(item[1], np.ndarray) for item in api_items) and len(api_items) == 2
    items = [page_call.out.get_nowait() for _ in range(page_call.out.qsize())]
    views = [item[1] for item in items if item[0] == "view"]
    assert len(items) == 3 and len(views) == 1  # the start view and the events' burst coalesced
    assert "Hi &lt;b&gt;" in views[0] and "Hello!" in views[0]
    latency = page_call.conversation.turns[-1].latency_ms if page_call.conversation else None
    assert latency is not None and 300 <= latency < 300 + 1000 * SHOW_EVERY_S * 3  # 2000 - 1700 ms of audio after
    page_call.on_event({"type": "input_audio_buffer.speech_started", "item_id": "u2", "audio_start_ms": 2000})
    await asyncio.sleep(SHOW_EVERY_S * 2)
    after = [page_call.out.get_nowait() for _ in range(page_call.out.qsize())]
    assert len(after) == 1 and after[0][0] == "view"  # a barge-in flush is followed by a fresh view
    for bridge in (api_call, page_call):
        await bridge.close("test over")
    await supervisor.shutdown()

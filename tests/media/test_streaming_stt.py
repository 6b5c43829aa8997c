"""Streaming transcription logic (fake engine): agreement, speculative final, bounds, sessions."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np

from cozy_media.bundled import SILERO_VAD, bundled_file
from cozy_media.stt.session import (
    TranscriptionSession,
    UtteranceFinal,
    UtteranceLikely,
    UtterancePartial,
    UtteranceStarted,
    UtteranceStopped,
)
from cozy_media.stt.streaming import StreamingTranscriber
from cozy_media.stt.whisper_short import context_seconds, cut_loop, has_loop, loop_start
from cozy_media.vad import StreamingVAD, VadParams, load_silero

from .conftest import Clip
from .fakes import FakeSTT

TEXT = "please remind me to call my mother tomorrow morning at nine"


async def test_partials_only_grow_and_never_show_a_garbled_word() -> None:
    engine = FakeSTT(TEXT)
    t = StreamingTranscriber(engine, partial_interval_ms=200, min_partial_audio_ms=200)
    published: list[str] = []
    step = np.zeros(3200, dtype=np.int16)  # 200 ms
    for _ in range(20):
        t.append(step)
        if t.partial_due():
            p = await t.decode_partial()
            if p is not None:
                published.append(p.stable)
    assert published, "no partial"
    for before, after in itertools.pairwise(published):
        assert after.startswith(before)  # a partial may only move its unstable words; stable grows
    assert len(set(published)) > 1
    assert all("~" not in p for p in published)
    assert TEXT.startswith(published[-1])
    final = await t.finalize()
    assert final.text == " ".join(TEXT.split()[: 4000 // 300])
    assert t.audio_ms == 0  # the buffer is free for the next utterance


async def test_speculative_final_is_reused_when_speech_does_not_resume() -> None:
    engine = FakeSTT(TEXT, delay=0.05)
    t = StreamingTranscriber(engine)
    t.append(np.zeros(16000, dtype=np.int16))
    t.prefinalize()  # VAD saw the pause at 1000 ms
    t.append(np.zeros(8000, dtype=np.int16))  # the silence window goes on
    task = t.finalize(end_ms=1000.0)
    result = await task
    assert [n for n, _ in engine.calls] == [16000]  # one decode: the speculative one
    assert result.text.startswith("please remind me")

    engine.calls.clear()
    t.append(np.zeros(16000, dtype=np.int16))
    t.prefinalize()
    t.append(np.zeros(48000, dtype=np.int16))  # speech resumed, ended at 1.8 s, silence followed
    await t.finalize(end_ms=1800.0)
    assert [n for n, _ in engine.calls][-1] == int(2.1 * 16000)  # redone up to the end + 300 ms


async def test_partial_spacing_adapts_to_slow_decodes() -> None:
    engine = FakeSTT(TEXT, delay=0.5)
    t = StreamingTranscriber(engine, partial_interval_ms=200, min_partial_audio_ms=200)
    t.append(np.zeros(3200, dtype=np.int16))
    assert t.partial_due()
    await t.decode_partial()
    t.append(np.zeros(3200 * 2, dtype=np.int16))  # 400 ms more: not enough after a 500 ms decode
    assert not t.partial_due()
    t.append(np.zeros(3200 * 2, dtype=np.int16))
    assert t.partial_due()


async def test_buffer_is_capped() -> None:
    t = StreamingTranscriber(FakeSTT(TEXT), max_utterance_s=2.0)
    assert t.append(np.zeros(48000, dtype=np.int16)) == 32000
    assert t.full and t.audio_ms == 2000.0
    assert t.append(np.zeros(10, dtype=np.int16)) == 0


def test_short_form_guards() -> None:
    assert context_seconds(1.0) == 10 and context_seconds(12.2) == 15 and context_seconds(29.0) == 30
    assert has_loop("hello hello hello".split())
    assert has_loop("call my mother call my mother".split())
    assert not has_loop("please remind me to call my mother".split())
    looped = "Turn off the lights. Turn off the lights. Turn off".split()
    assert loop_start(looped) == 4  # the transcript is the words before the repetition
    assert loop_start("Hello? Hello? Hello? Hello?".split()) == 1


def test_loops_are_found_per_character_where_words_have_no_spaces() -> None:
    assert cut_loop("谢谢你个朋友,再见") == ("谢谢你个朋友,再见", None)  # 谢谢 twice is a word
    assert cut_loop("鞋鞋鞋鞋鞋鞋鞋鞋鞋") == ("鞋", 1)
    assert cut_loop("千万夫妮妮妮妮妮妮") == ("千万夫妮", 4)
    assert cut_loop("我想预订会议室我想预订会议室我想") == ("我想预订会议室", 7)
    assert cut_loop("Turn off the lights. Turn off the lights. Turn off") == ("Turn off the lights.", 4)
    assert cut_loop("please remind me") == ("please remind me", None)


async def collect(session: TranscriptionSession) -> list:
    events = []
    while (ev := await session.next_event()) is not None:
        events.append(ev)
    return events


async def test_session_without_vad_commits_manually() -> None:
    engine = FakeSTT(TEXT, per_word_ms=100)
    session = TranscriptionSession(StreamingTranscriber(engine, partial_interval_ms=200, min_partial_audio_ms=200))
    reader = asyncio.create_task(collect(session))
    for _ in range(10):
        await session.feed(np.zeros(1600, dtype=np.int16))
        await asyncio.sleep(0.01)
    assert session.commit()
    assert not session.commit()  # nothing open any more
    await session.feed(np.zeros(1600, dtype=np.int16))  # a new utterance starts
    await session.finish()
    events = await reader
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "UtteranceStarted" and "UtterancePartial" in kinds
    finals = [e for e in events if isinstance(e, UtteranceFinal)]
    assert [f.utterance for f in finals] == [1, 2]
    assert finals[0].transcript.text.startswith("please remind me to call my mother tomorrow morning at")
    assert kinds.index("UtteranceStopped") < kinds.index("UtteranceFinal")


async def test_session_with_vad_segments_utterances(clips: list[Clip]) -> None:
    vad = StreamingVAD(load_silero(bundled_file(*SILERO_VAD)), VadParams(silence_duration_ms=400))
    session = TranscriptionSession(StreamingTranscriber(FakeSTT(TEXT)), vad)
    reader = asyncio.create_task(collect(session))
    silence = np.zeros(12000, dtype=np.int16)
    track = np.concatenate([silence, clips[0].at(16000), silence, clips[1].at(16000), silence])
    for i in range(0, len(track), 640):
        await session.feed(track[i : i + 640])
    await session.finish()
    events = await reader
    started = [e for e in events if isinstance(e, UtteranceStarted)]
    stopped = [e for e in events if isinstance(e, UtteranceStopped)]
    finals = [e for e in events if isinstance(e, UtteranceFinal)]
    assert [e.utterance for e in started] == [1, 2] == [e.utterance for e in finals] == [e.utterance for e in stopped]
    assert started[0].audio_start_ms >= 400  # silence before speech is not part of the utterance
    for final in finals:
        assert final.transcript.text and final.audio_end_ms > final.audio_start_ms
    assert any(isinstance(e, UtterancePartial) for e in events)
    assert not any(isinstance(e, UtteranceLikely) for e in events)  # only when asked for


async def test_likely_final_comes_at_the_pause_before_end_of_speech(clips: list[Clip]) -> None:
    """With `likely_finals`, the speculative decode started at the pause is announced as soon as it
    is done, inside the silence window: before `UtteranceStopped`, with the final's very words."""
    vad = StreamingVAD(load_silero(bundled_file(*SILERO_VAD)), VadParams(silence_duration_ms=400))
    session = TranscriptionSession(StreamingTranscriber(FakeSTT(TEXT, delay=0.02)), vad, likely_finals=True)
    reader = asyncio.create_task(collect(session))
    silence = np.zeros(12000, dtype=np.int16)
    track = np.concatenate([silence, clips[0].at(16000), silence, clips[1].at(16000), silence])
    for i in range(0, len(track), 640):
        await session.feed(track[i : i + 640])
        await asyncio.sleep(0.004)  # 10× real time: the 400 ms window lasts ~40 ms, the decode 20
    await session.finish()
    events = await reader
    for utterance in (1, 2):
        mine = [e for e in events if e.utterance == utterance]
        kinds = [type(e).__name__ for e in mine]
        assert "UtteranceLikely" in kinds, kinds
        last_likely = max(i for i, k in enumerate(kinds) if k == "UtteranceLikely")
        assert last_likely < kinds.index("UtteranceStopped"), kinds
        final = next(e for e in mine if isinstance(e, UtteranceFinal))
        assert mine[last_likely].text == final.transcript.text  # the same decode, reused

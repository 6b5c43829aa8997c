"""Silero VAD streaming: speech start/stop with the server_vad parameters, carried state."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cozy_media.bundled import SILERO_VAD, bundled_file
from cozy_media.vad import (
    SileroVAD,
    SpeechPaused,
    SpeechStarted,
    SpeechStopped,
    StreamingVAD,
    VadParams,
    load_silero,
)
from cozy_media.workers import configure_pool

from .conftest import Clip


def speech_track(clips: list[Clip]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """1 s silence, sentence, 1 s silence, sentence, 1 s silence at 16 kHz, with the true spans (ms)."""
    silence = np.zeros(16000, dtype=np.int16)
    parts, spans, pos = [silence], [], 16000
    for clip in clips[:2]:
        s = clip.at(16000)
        parts += [s, silence]
        spans.append((pos * 1000 // 16000, (pos + len(s)) * 1000 // 16000))
        pos += len(s) + 16000
    return np.concatenate(parts), spans


def run(vad: StreamingVAD, x: np.ndarray, frame: int) -> list:
    events = []
    for i in range(0, len(x), frame):
        events += vad.process(x[i : i + frame])
    return events


def test_two_utterances_start_and_stop(clips: list[Clip]) -> None:
    x, spans = speech_track(clips)
    vad = StreamingVAD(load_silero(bundled_file(*SILERO_VAD)), VadParams(silence_duration_ms=500))
    events = run(vad, x, 320)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    stops = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(starts) == 2 and len(stops) == 2, events
    for (begin, end), start, stop in zip(spans, starts, stops, strict=True):
        assert begin - 150 <= start.detected_ms <= begin + 300  # detected near the real onset
        assert start.audio_start_ms == pytest.approx(max(0.0, start.detected_ms - 300))  # prefix padding
        assert end - 500 <= stop.audio_end_ms <= end + 100  # piper leaves a short tail of silence
        assert stop.detected_ms - stop.audio_end_ms >= 500  # stop declared after the silence duration
    assert not vad.speaking


def test_frame_size_does_not_change_events(clips: list[Clip]) -> None:
    x, _ = speech_track(clips)
    model = load_silero(bundled_file(*SILERO_VAD))
    a = run(StreamingVAD(model), x, 160)
    b = run(StreamingVAD(model), x, 4000)
    assert a == b


def test_silence_duration_and_threshold_matter(clips: list[Clip]) -> None:
    x, _ = speech_track(clips)
    model = load_silero(bundled_file(*SILERO_VAD))
    merged = run(StreamingVAD(model, VadParams(silence_duration_ms=2500)), x, 512)
    assert sum(isinstance(e, SpeechStarted) for e in merged) == 1
    assert any(isinstance(e, SpeechPaused) for e in merged)
    default = [e for e in run(StreamingVAD(model), x, 512) if isinstance(e, SpeechStarted)]
    strict = [e for e in run(StreamingVAD(model, VadParams(threshold=0.95)), x, 512) if isinstance(e, SpeechStarted)]
    assert strict and strict[0].detected_ms >= default[0].detected_ms
    noise = (np.random.default_rng(1).standard_normal(32000) * 300).astype(np.int16)
    assert not run(StreamingVAD(model), noise, 512)  # quiet noise is not speech


def test_reset_and_silence() -> None:
    vad = StreamingVAD(load_silero(bundled_file(*SILERO_VAD)))
    assert run(vad, np.zeros(16000, dtype=np.int16), 320) == []
    assert vad.position == 16000 // 512 * 512
    vad.reset()
    assert vad.position == 0 and not vad.speaking


async def test_engine_feed_runs_on_light_lane(clips: list[Clip]) -> None:
    configure_pool(2)
    engine = SileroVAD()
    await engine.initialize()
    assert (await engine.health_check()).ok
    stream = engine.create_stream(VadParams(silence_duration_ms=300))
    x, _ = speech_track(clips)
    events = []
    for i in range(0, len(x), 480):
        events += await stream.feed(x[i : i + 480])
    assert sum(isinstance(e, SpeechStopped) for e in events) == 2


async def test_concurrent_streams_share_batched_model_calls(clips: list[Clip]) -> None:
    """Many sessions' chunks run in a few batched calls, with the same events as one by one."""
    from cozy_media.vad.batch import batcher_for

    configure_pool(2)
    model = load_silero(bundled_file(*SILERO_VAD))
    x, _ = speech_track(clips)
    expected = run(StreamingVAD(model, VadParams(silence_duration_ms=300)), x, 480)
    frames = [(0, 480), (1, 640), (2, 320)]  # different frame sizes: one or two chunks per feed
    streams = [StreamingVAD(model, VadParams(silence_duration_ms=300)) for _ in range(12)]

    async def talk(i: int) -> list:
        frame = frames[i % 3][1]
        events = []
        for pos in range(0, len(x), frame):
            events += await streams[i].feed(x[pos : pos + frame])
        return events

    batcher = batcher_for(model)
    before_batches, before_rows = batcher.batches, batcher.rows
    results = await asyncio.gather(*(talk(i) for i in range(12)))
    for got in results:
        assert [type(e) for e in got] == [type(e) for e in expected]
        for a, b in zip(got, expected, strict=True):  # onnx batch rows may differ in the last bits
            assert {k: round(v, 0) for k, v in vars_of(a).items()} == {k: round(v, 0) for k, v in vars_of(b).items()}
    batches, rows = batcher.batches - before_batches, batcher.rows - before_rows
    assert rows >= 12 * (len(x) // 512) - 12
    assert batches < rows / 4, (batches, rows)  # shared calls, not one per chunk


def vars_of(event: object) -> dict[str, float]:
    return {k: getattr(event, k) for k in event.__slots__}  # type: ignore[attr-defined]


class _CountingModel:
    """Silero's batch interface, answering silence at once: what the batching window does is visible
    in how many model calls the batcher makes."""

    def __init__(self, window_s: float) -> None:
        self.batch_window_s = window_s

    def new_state(self) -> np.ndarray:
        return np.zeros((2, 1, 128), dtype=np.float32)

    def step_batch(self, windows: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(windows), dtype=np.float32), states


async def _staggered_feeds(model: _CountingModel, streams: int, gap_s: float) -> int:
    """Prime with two concurrent feeds, then one chunk per stream `gap_s` apart (as live calls'
    frames arrive); returns the model calls the staggered feeds took."""
    from cozy_media.vad.batch import batcher_for

    configure_pool(2)
    vads = [StreamingVAD(model, VadParams()) for _ in range(streams)]
    chunk = np.zeros(512, dtype=np.int16)
    await asyncio.gather(vads[0].feed(chunk), vads[1].feed(chunk))
    batcher = batcher_for(model)
    before = batcher.batches

    async def feed(i: int) -> None:
        await asyncio.sleep(i * gap_s)
        await vads[i].feed(chunk)

    await asyncio.gather(*(feed(i) for i in range(streams)))
    return batcher.batches - before


async def test_batching_window_gathers_staggered_sessions_into_one_call() -> None:
    assert await _staggered_feeds(_CountingModel(window_s=0.2), streams=8, gap_s=0.005) <= 2
    assert await _staggered_feeds(_CountingModel(window_s=0.0), streams=8, gap_s=0.005) >= 6  # next tick only


async def test_a_lone_stream_never_waits_for_the_window() -> None:
    configure_pool(2)
    vad = StreamingVAD(_CountingModel(window_s=0.5), VadParams())
    chunk = np.zeros(512, dtype=np.int16)
    started = asyncio.get_running_loop().time()
    for _ in range(5):
        await vad.feed(chunk)
    assert asyncio.get_running_loop().time() - started < 0.4  # five feeds, none held for 0.5 s


def test_the_bundled_vad_batches_with_its_configured_window() -> None:
    from cozy_media.vad.silero import SileroOptions

    assert SileroOptions().batch_window_ms == 20.0
    assert SileroOptions(batch_window_ms=0).batch_window_ms == 0

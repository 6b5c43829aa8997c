"""Per-session synthesis (fake engine): chunk order, lookahead, cancel between chunks, cache."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cozy_media.tts.cache import MemoryTTSCache, cache_key
from cozy_media.tts.synthesizer import SpeechSynthesizer

from .fakes import FakeTTS

TEXT = "Hello there. The weather is sunny today. Would you like to hear more? Goodbye."


async def test_streams_one_chunk_per_sentence_resampled() -> None:
    engine = FakeTTS()
    synth = SpeechSynthesizer(engine, voice="v1", sample_rate=24000)
    chunks = [c async for c in synth.stream(TEXT)]
    assert (
        [c.text for c in chunks]
        == engine.texts
        == ["Hello there.", "The weather is sunny today.", "Would you like to hear more?", "Goodbye."]
    )
    assert [c.index for c in chunks] == [0, 1, 2, 3]
    assert all(c.audio.sample_rate == 24000 for c in chunks)
    assert chunks[0].audio.duration_ms == pytest.approx(200.0, abs=1)  # 2 words x 100 ms


async def test_llm_stream_input_starts_at_first_sentence() -> None:
    engine = FakeTTS()
    synth = SpeechSynthesizer(engine, voice="v1")
    first_chunk_seen = asyncio.Event()

    async def tokens() -> AsyncIterator[str]:
        for word in "Sure. Let me check that for you.".split(" "):
            yield word + " "
            if word == "Let":
                await asyncio.wait_for(first_chunk_seen.wait(), 2)  # the LLM is still talking
        yield ""

    out = []
    async for chunk in synth.stream(tokens()):
        out.append(chunk.text)
        first_chunk_seen.set()
    assert out == ["Sure.", "Let me check that for you."]


async def test_cancel_stops_between_chunks_and_abandons_lookahead() -> None:
    engine = FakeTTS(delay=0.05)
    synth = SpeechSynthesizer(engine, voice="v1", lookahead=1)
    got = []
    async for chunk in synth.stream(TEXT):
        got.append(chunk.text)
        synth.cancel()  # barge-in while the first chunk plays
    assert got == ["Hello there."]
    assert len(engine.texts) <= 2  # at most the one-chunk lookahead was started
    assert synth.cancelled


async def test_speed_is_passed_through() -> None:
    synth = SpeechSynthesizer(FakeTTS(), voice="v1", speed=2.0, sample_rate=None)
    chunks = [c async for c in synth.stream("One two three four.")]
    assert chunks[0].audio.duration_ms == pytest.approx(200.0, abs=1) and chunks[0].audio.sample_rate == 16000


async def test_cache_lru_by_entries_and_bytes() -> None:
    cache = MemoryTTSCache(max_entries=2, max_bytes=1000)
    k1, k2, k3 = (cache_key(t, "joe", "mp3", 1.0) for t in ("a", "b", "c"))
    assert k1 != cache_key("a", "joe", "mp3", 1.25) != cache_key("a", "joe", "wav", 1.0)
    await cache.set(k1, b"1" * 100)
    await cache.set(k2, b"2" * 100)
    assert await cache.get(k1) == b"1" * 100  # k1 is now the most recent
    await cache.set(k3, b"3" * 100)
    assert await cache.get(k2) is None and await cache.get(k1) is not None
    await cache.set("big", b"x" * 600)  # over a quarter of max_bytes: not kept
    assert await cache.get("big") is None
    assert cache.size_bytes == 200 and len(cache) == 2 and cache.hits == 2

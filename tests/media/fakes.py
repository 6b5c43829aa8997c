"""Deterministic STT/TTS engines for testing the streaming logic without models."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import numpy as np

from cozy_media.audio.frames import PcmAudio
from cozy_media.stt.base import STTEngine, Transcript
from cozy_media.tts.base import TTSEngine


class FakeSTT(STTEngine):
    """Hears one word per `per_word_ms` of audio; the word being spoken is heard garbled."""

    provider: ClassVar[str] = "fake"

    def __init__(self, text: str, per_word_ms: int = 300, delay: float = 0.0) -> None:
        self.words = text.split()
        self.per_word_ms = per_word_ms
        self.delay = delay
        self.calls: list[tuple[int, bool]] = []

    async def transcribe(  # type: ignore[no-untyped-def]
        self, audio, *, language=None, prompt=None, word_timestamps=False, text_only=False, draft=False
    ):
        self.calls.append((len(audio), text_only))
        if self.delay:
            await asyncio.sleep(self.delay)
        n = int(len(audio) * 1000 / 16000 // self.per_word_ms)
        heard = self.words[:n]
        if 0 < n < len(self.words):
            heard = [*heard, self.words[n][:2] + f"~{len(self.calls)}"]  # differs on every decode
        return Transcript(" ".join(heard), "en", len(audio) / 16000)


class FakeTTS(TTSEngine):
    """100 ms of a tone per word at 16 kHz; records what it was asked."""

    provider: ClassVar[str] = "fake"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.texts: list[str] = []

    def voices(self) -> list[str]:
        return ["v1", "v2"]

    def sample_rate(self, voice: str) -> int:
        return 16000

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> PcmAudio:
        self.texts.append(text)
        if self.delay:
            await asyncio.sleep(self.delay)
        n = int(1600 * len(text.split()) / speed)
        return PcmAudio((np.sin(np.arange(n) / 5) * 3000).astype(np.int16), 16000)

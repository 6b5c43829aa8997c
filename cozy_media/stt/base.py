"""The `stt` engine kind: what a speech-to-text provider offers, and what it returns.

Audio goes in as mono float32 at 16 kHz (what Whisper-family models take); the edge decodes and
resamples before calling. `text_only=True` says only the text is wanted (streaming partials and
finals, json/text answers): the provider may skip segment timestamps and decode faster.
`draft=True` marks a streaming partial, re-decoded many times and superseded by the final: the
provider may trade accuracy for speed there (Whisper: a narrower beam).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from cozy_core.engines import Engine

SAMPLE_RATE = 16000


@dataclass(frozen=True, slots=True)
class Word:
    word: str
    start: float
    end: float
    probability: float = 0.0


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    tokens: tuple[int, ...] = ()
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float
    segments: tuple[Segment, ...] = field(default_factory=tuple)

    @property
    def confidence(self) -> float:
        """exp of the duration-weighted mean token log-probability, in [0, 1] (1.0 without segments)."""
        if not self.segments:
            return 1.0 if self.text else 0.0
        total = sum(max(s.end - s.start, 0.01) for s in self.segments)
        mean = sum(s.avg_logprob * max(s.end - s.start, 0.01) for s in self.segments) / total
        return round(min(1.0, max(0.0, math.exp(mean))), 4)


class STTEngine(Engine):
    """Base of every STT provider."""

    kind: ClassVar[str] = "stt"
    api_version: ClassVar[int] = 1
    sample_rate: ClassVar[int] = SAMPLE_RATE

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        prompt: str | None = None,
        word_timestamps: bool = False,
        text_only: bool = False,
        draft: bool = False,
    ) -> Transcript:
        """Transcribe a whole float32 16 kHz mono signal."""
        raise NotImplementedError

    async def stream_segments(
        self, audio: np.ndarray, *, language: str | None = None, prompt: str | None = None
    ) -> AsyncIterator[Segment]:
        """Segments as they are decoded (default: all at once, after `transcribe`)."""
        result = await self.transcribe(audio, language=language, prompt=prompt)
        for segment in result.segments:
            yield segment

"""The `tts` engine kind: turn one chunk of text (about a sentence) into PCM16 mono audio.

Why per chunk: the sentence chunker feeds a provider as text arrives (from an LLM stream or a
long input), and one call per chunk is the unit that can be streamed and cancelled.
"""

from __future__ import annotations

from typing import ClassVar

from cozy_core.engines import Engine

from ..audio.frames import PcmAudio

# OpenAI's voice names: what a remote OpenAI TTS offers, and what config aliases to local voices.
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "onyx",
    "nova",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)


class TTSEngine(Engine):
    """Base of every TTS provider."""

    kind: ClassVar[str] = "tts"
    api_version: ClassVar[int] = 1

    def voices(self) -> list[str]:
        """The voice ids this provider can speak with."""
        raise NotImplementedError

    def sample_rate(self, voice: str) -> int:
        """The rate `synthesize` returns for `voice`."""
        raise NotImplementedError

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> PcmAudio:
        """Speak `text` (one chunk) with `voice`; `speed` 0.25–4.0, 1.0 is the voice's own pace."""
        raise NotImplementedError

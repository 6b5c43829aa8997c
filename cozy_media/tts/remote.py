"""Remote TTS: any OpenAI-compatible `POST /audio/speech` endpoint, asked for raw `pcm`
(24 kHz 16-bit mono), so chunks join and re-encode like local ones."""

from __future__ import annotations

from typing import ClassVar

import httpx
from pydantic import Field

from cozy_core.engines import EngineError, Health

from ..audio.frames import PcmAudio
from ..remote import RemoteOptions, make_client, upstream_error
from .base import TTSEngine

OPENAI_VOICES = ["alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
                 "marin", "cedar"]
PCM_RATE = 24000


class RemoteTTSOptions(RemoteOptions):
    voices: list[str] = Field(default_factory=lambda: list(OPENAI_VOICES), min_length=1)
    instructions: str | None = None


class OpenAITTS(TTSEngine):
    provider: ClassVar[str] = "openai"
    Options = RemoteTTSOptions

    def __init__(self, options: RemoteTTSOptions) -> None:
        self.options = options
        self._client: httpx.AsyncClient | None = None

    def voices(self) -> list[str]:
        return list(self.options.voices)

    def sample_rate(self, voice: str) -> int:
        return PCM_RATE

    async def initialize(self) -> None:
        self._client = make_client(self.options)

    async def health_check(self) -> Health:
        return Health(self._client is not None, "" if self._client else "not initialized")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> PcmAudio:
        if self._client is None:
            raise EngineError("remote TTS not initialized", code="ENGINE_UNAVAILABLE", status=503)
        body = {"model": self.options.model, "input": text, "voice": voice, "response_format": "pcm", "speed": speed}
        if self.options.instructions:
            body["instructions"] = self.options.instructions
        try:
            response = await self._client.post("audio/speech", json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise upstream_error(exc, "speech") from exc
        return PcmAudio.from_bytes(response.content, PCM_RATE)

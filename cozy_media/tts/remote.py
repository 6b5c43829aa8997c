"""Remote TTS: any OpenAI-compatible `POST /audio/speech` endpoint, asked for raw `pcm`
(24 kHz 16-bit mono), so chunks join and re-encode like local ones."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ..audio.frames import PcmAudio
from ..remote import RemoteClient, RemoteOptions
from .base import OPENAI_VOICES, TTSEngine

PCM_RATE = 24000


class RemoteTTSOptions(RemoteOptions):
    voices: list[str] = Field(default_factory=lambda: list(OPENAI_VOICES), min_length=1)
    instructions: str | None = None


class OpenAITTS(RemoteClient, TTSEngine):
    what = "remote TTS"
    provider: ClassVar[str] = "openai"
    Options = RemoteTTSOptions

    def __init__(self, options: RemoteTTSOptions) -> None:
        self.options = options

    def voices(self) -> list[str]:
        return list(self.options.voices)

    def sample_rate(self, voice: str) -> int:
        return PCM_RATE

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> PcmAudio:
        body = {"model": self.options.model, "input": text, "voice": voice, "response_format": "pcm", "speed": speed}
        if self.options.instructions:
            body["instructions"] = self.options.instructions
        pcm = await self.post("audio/speech", "speech", json=body)
        return PcmAudio.from_bytes(pcm, PCM_RATE)

"""Configuration of the speech engines (`stt`, `tts`, `vad` in engines.yaml) and the `audio`
request limits. Every section has defaults, so an engines.yaml without them still loads and the
server speaks with the bundled models.

Provider `options` stay plain mappings here: each provider validates them with its own `Options`
model when services are built, and a bad one is reported as `file: key: reason`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cozy_core.engines import blank_to_none
from cozy_media.tts.base import OPENAI_VOICES

OUTPUT_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm", "ulaw", "alaw")
UPLOAD_FORMATS = ("wav", "mp3", "mp4", "m4a", "mpeg", "mpga", "aac", "ogg", "oga", "opus", "webm", "flac")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class STTConfig(_Strict):
    enabled: bool = True
    provider: str = Field("faster_whisper", min_length=1)
    options: dict[str, Any] = {}
    partial_interval_ms: float = Field(400.0, ge=100)  # streaming: minimum spacing of partial re-decodes
    max_utterance_s: float = Field(28.0, gt=1, le=30)  # streaming: a longer utterance is finalized and split
    language: str | None = None  # default language when a request names none

    @field_validator("language", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return blank_to_none(value)


class TTSConfig(_Strict):
    enabled: bool = True
    provider: str = Field("piper", min_length=1)
    options: dict[str, Any] = {}
    default_voice: str = Field("joe", min_length=1)
    # OpenAI voice names (and any other names) → a voice the provider has.
    voice_aliases: dict[str, str] = Field(default_factory=lambda: dict.fromkeys(OPENAI_VOICES, "joe"))
    max_chunk_chars: int = Field(250, ge=16)
    first_chunk_max_chars: int = Field(60, ge=16)


class RouteTTSConfig(TTSConfig):
    """A language's TTS: OpenAI voice names not listed map to its `default_voice`."""

    voice_aliases: dict[str, str] = Field(default_factory=dict)


class LanguageConfig(_Strict):
    """The STT and/or TTS a language uses instead of the default ones (`languages.zh` in engines.yaml).

    Picked by a personality's `voice.language`, a realtime session's `transcription.language`, or
    an audio request's `language`. Loaded on first use, so the default path pays nothing for it.
    """

    stt: STTConfig | None = None  # None: the default STT
    tts: RouteTTSConfig | None = None  # None: the default TTS


class VADConfig(_Strict):
    enabled: bool = True
    provider: str = Field("silero", min_length=1)
    options: dict[str, Any] = {}
    threshold: float = Field(0.5, gt=0, lt=1)
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, ge=50, le=10000)


class AudioConfig(_Strict):
    """Limits of the speech endpoints."""

    max_upload_bytes: int = Field(26_214_400, ge=1024)  # 25 MB
    max_input_chars: int = Field(4096, ge=1)
    max_duration_s: float = Field(1800.0, gt=0)  # longest upload decoded
    upload_formats: list[str] = list(UPLOAD_FORMATS)
    response_formats: list[str] = list(OUTPUT_FORMATS)
    cache_max_entries: int = Field(256, ge=0)  # TTS results kept in memory (0: off)
    cache_max_bytes: int = Field(64 * 1024 * 1024, ge=0)

    @model_validator(mode="after")
    def _known(self) -> AudioConfig:
        bad = [f for f in self.response_formats if f not in OUTPUT_FORMATS]
        if bad:
            raise ValueError(f"unknown response format(s) {', '.join(bad)} (known: {', '.join(OUTPUT_FORMATS)})")
        bad = [f for f in self.upload_formats if f not in UPLOAD_FORMATS]
        if bad:
            raise ValueError(f"unknown upload format(s) {', '.join(bad)} (known: {', '.join(UPLOAD_FORMATS)})")
        return self

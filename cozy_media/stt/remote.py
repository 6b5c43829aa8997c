"""Remote STT: any OpenAI-compatible `POST /audio/transcriptions` endpoint (OpenAI, speaches,
a vLLM or LocalAI server, or another CozyEngine)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import httpx
import numpy as np

from ..audio.encode import encode_audio
from ..audio.frames import float32_to_int16
from ..remote import RemoteClient, RemoteOptions, upstream_error
from .base import SAMPLE_RATE, Segment, STTEngine, Transcript


class RemoteSTTOptions(RemoteOptions):
    response_format: Literal["json", "verbose_json"] = "json"


class OpenAISTT(RemoteClient, STTEngine):
    what = "remote STT"
    provider: ClassVar[str] = "openai"
    Options = RemoteSTTOptions

    def __init__(self, options: RemoteSTTOptions) -> None:
        self.options = options

    async def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None = None,
        prompt: str | None = None,
        word_timestamps: bool = False,
        text_only: bool = False,
    ) -> Transcript:
        client = self.client()
        wav = encode_audio(float32_to_int16(audio), SAMPLE_RATE, "wav")
        data: dict[str, Any] = {"model": self.options.model, "response_format": self.options.response_format}
        if language:
            data["language"] = language
        if prompt:
            data["prompt"] = prompt
        try:
            response = await client.post(
                "audio/transcriptions", data=data, files={"file": ("audio.wav", wav, "audio/wav")}
            )
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise upstream_error(exc, "transcription") from exc
        duration = float(body.get("duration") or len(audio) / SAMPLE_RATE)
        segments = tuple(
            Segment(
                id=int(s.get("id", i)),
                start=float(s.get("start", 0.0)),
                end=float(s.get("end", 0.0)),
                text=str(s.get("text", "")),
                avg_logprob=float(s.get("avg_logprob", 0.0)),
                no_speech_prob=float(s.get("no_speech_prob", 0.0)),
            )
            for i, s in enumerate(body.get("segments") or [])
        )
        return Transcript(
            text=str(body.get("text", "")).strip(),
            language=str(body.get("language") or language or ""),
            duration=round(duration, 3),
            segments=segments,
        )

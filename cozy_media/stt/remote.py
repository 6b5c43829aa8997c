"""Remote STT: any OpenAI-compatible `POST /audio/transcriptions` endpoint (OpenAI, speaches,
a vLLM or LocalAI server, or another CozyEngine)."""

from __future__ import annotations

from typing import ClassVar, Literal

import aiohttp
import numpy as np
import orjson
from pydantic import Field

from ..audio.encode import encode_audio
from ..audio.frames import float32_to_int16
from ..remote import RemoteClient, RemoteOptions, upstream_error
from .base import SAMPLE_RATE, Segment, STTEngine, Transcript


class RemoteSTTOptions(RemoteOptions):
    response_format: Literal["json", "verbose_json"] = "json"
    # Streaming partials re-send the whole growing utterance every partial interval: costly on a
    # metered API, so off unless asked. The final is still decoded speculatively in the silence.
    partials: bool = Field(False)


class OpenAISTT(RemoteClient, STTEngine):
    what = "remote STT"
    provider: ClassVar[str] = "openai"
    Options = RemoteSTTOptions

    def __init__(self, options: RemoteSTTOptions) -> None:
        self.options = options

    @property
    def partials(self) -> bool:
        return self.options.partials

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
        wav = encode_audio(float32_to_int16(audio), SAMPLE_RATE, "wav")
        form = aiohttp.FormData()
        form.add_field("model", self.options.model)
        form.add_field("response_format", self.options.response_format)
        if language:
            form.add_field("language", language)
        if prompt:
            form.add_field("prompt", prompt)
        form.add_field("file", wav, filename="audio.wav", content_type="audio/wav")
        raw = await self.post("audio/transcriptions", "transcription", data=form)
        try:
            body = orjson.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
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

"""Text to speech over HTTP: `POST /v1/audio/speech` (OpenAI) and `POST /v1/audio/tts`,
`POST /v1/audio/tts/stream` (SSE `audio_chunk` events).

Every parameter is checked (text, voice, format, speed) before synthesis starts, and the first
chunk is synthesized before the response starts, so failures are proper 4xx/5xx answers.
"""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cozy_core.errors import CozyError
from cozy_media.audio.encode import OutputFormat, encode_audio
from cozy_media.speech import SpeechService
from cozy_media.workers import get_pool

from ..errors import error_body, from_validation
from ..sse import EventStreamResponse
from .chat import read_json


class SpeechRequest(BaseModel):
    """OpenAI CreateSpeechRequest (unknown fields are ignored, as the SDK may add some)."""

    model_config = ConfigDict(extra="ignore")
    model: str = Field(min_length=1)
    input: str
    voice: str | dict[str, Any]
    response_format: str = "mp3"
    speed: float = 1.0
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = None


class TTSRequest(BaseModel):
    """The PRD's TTS body: `text` (or `input`), `voice`, `format` (or `response_format`), `speed`."""

    model_config = ConfigDict(extra="ignore")
    text: str | None = None
    input: str | None = None
    voice: str | None = None
    format: str | None = None
    response_format: str | None = None
    speed: float | None = None
    language: str | None = None


def _speech(request: Request) -> SpeechService:
    return request.app.state.services.speech


async def _parse(request: Request, model: type[BaseModel]) -> Any:
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise CozyError("request body must be a JSON object", code="VALIDATION_ERROR", status=400)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None


def _voice_name(voice: str | dict[str, Any] | None) -> str | None:
    if isinstance(voice, dict):
        value = voice.get("id")
        if not isinstance(value, str):
            raise CozyError('voice must be a name or {"id": name}', code="VALIDATION_ERROR", status=400, param="voice")
        return value
    return voice


def _usage(text: str, audio_bytes: int, fmt: OutputFormat) -> dict[str, int]:
    """Token counts are estimates (4 characters per input token, 20 ms of audio per output token)."""
    seconds = audio_bytes / 48000 if fmt.name in ("pcm", "wav") else 0.0
    inp, out = math.ceil(len(text) / 4), math.ceil(seconds * 50)
    return {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}


async def _primed(chunks: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    """Fetch the first piece now (so its failure is still an HTTP error), then stream the rest."""
    first = await anext(chunks, b"")

    async def rest() -> AsyncGenerator[bytes, None]:
        try:
            if first:
                yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    return rest()


async def speech(request: Request) -> Response:
    """OpenAI `POST /v1/audio/speech`: audio bytes (streamed), or SSE with `stream_format: sse`."""
    svc = _speech(request)
    req: SpeechRequest = await _parse(request, SpeechRequest)
    text = svc.check_text(req.input)
    voice = svc.resolve_voice(_voice_name(req.voice))
    fmt = svc.check_format(req.response_format)
    speed = svc.check_speed(req.speed)
    if req.stream_format == "sse":
        body = await _primed(svc.speech_chunks(text, voice=voice, fmt=fmt, speed=speed))
        return EventStreamResponse(_speech_sse(body, text, fmt))
    if fmt.name == "wav":  # a WAV header with exact sizes needs the whole signal first
        data = await svc.synthesize(text, voice=voice, fmt=fmt, speed=speed)
        return Response(data, media_type=fmt.content_type)
    body = await _primed(svc.speech_chunks(text, voice=voice, fmt=fmt, speed=speed))
    return StreamingResponse(body, media_type=fmt.content_type)


async def _speech_sse(body: AsyncGenerator[bytes, None], text: str, fmt: OutputFormat) -> AsyncGenerator[bytes, None]:
    total = 0
    try:
        async for chunk in body:
            total += len(chunk)
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(chunk).decode()}
            yield b"data: " + orjson.dumps(event) + b"\n\n"
    except CozyError as exc:
        yield b"data: " + orjson.dumps(error_body(exc)) + b"\n\n"
        return
    yield b"data: " + orjson.dumps({"type": "speech.audio.done", "usage": _usage(text, total, fmt)}) + b"\n\n"


def _tts_params(svc: SpeechService, req: TTSRequest) -> tuple[str, str, OutputFormat, float]:
    text = req.text if req.text is not None else req.input
    param = "text" if req.text is not None or req.input is None else "input"
    return (
        svc.check_text(text or "", param=param),
        svc.resolve_voice(req.voice),
        svc.check_format(req.format or req.response_format or "mp3", param="format"),
        svc.check_speed(req.speed),
    )


async def tts(request: Request) -> Response:
    """`POST /v1/audio/tts`: the whole file in one response (cached)."""
    svc = _speech(request)
    text, voice, fmt, speed = _tts_params(svc, await _parse(request, TTSRequest))
    data = await svc.synthesize(text, voice=voice, fmt=fmt, speed=speed)
    return Response(data, media_type=fmt.content_type, headers={"x-audio-format": fmt.name})


async def tts_stream(request: Request) -> Response:
    """`POST /v1/audio/tts/stream`: SSE `audio_chunk` per sentence (each a complete file in the
    requested format, base64, with `chunk_id`), then `done`."""
    svc = _speech(request)
    text, voice, fmt, speed = _tts_params(svc, await _parse(request, TTSRequest))
    await svc.loaded()
    chunks = svc.synthesizer(voice, speed).stream(text)
    first = await anext(chunks, None)
    return EventStreamResponse(_tts_events(first, chunks, fmt))


async def _tts_events(first: Any, chunks: AsyncIterator[Any], fmt: OutputFormat) -> AsyncGenerator[bytes, None]:
    count, duration_ms = 0, 0.0
    pool = get_pool()
    try:
        chunk = first
        while chunk is not None:
            data = await pool.run(encode_audio, chunk.audio.samples, chunk.audio.sample_rate, fmt.name)
            event = {
                "type": "audio_chunk",
                "chunk_id": chunk.index,
                "data": base64.b64encode(data).decode(),
                "format": fmt.name,
                "sample_rate": fmt.sample_rate or chunk.audio.sample_rate,
                "text": chunk.text,
                "duration_ms": round(chunk.audio.duration_ms, 1),
            }
            yield b"event: audio_chunk\ndata: " + orjson.dumps(event) + b"\n\n"
            count += 1
            duration_ms += chunk.audio.duration_ms
            chunk = await anext(chunks, None)
    except CozyError as exc:
        event = {"type": "error", **error_body(exc)}
        yield b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"
        return
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    done = {"type": "done", "chunks": count, "duration_ms": round(duration_ms, 1)}
    yield b"event: done\ndata: " + orjson.dumps(done) + b"\n\n"

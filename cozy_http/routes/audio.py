"""Speech to text over HTTP: `POST /v1/audio/transcriptions` (OpenAI) and `POST /v1/audio/stt`.

Parse the upload, let the speech service decode and transcribe, format the answer. Every check
(size, format, fields) happens before the first byte of a streamed answer.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from cozy_core.errors import CozyError
from cozy_media.audio.frames import PcmAudio
from cozy_media.speech import SpeechService
from cozy_media.stt.base import Transcript

from .. import transcript_formats as tf
from ..errors import error_body
from ..sse import EventStreamResponse
from ..uploads import Upload, read_upload


def _speech(request: Request) -> SpeechService:
    return request.app.state.services.speech


def _json(data: object) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def _language(upload: Upload) -> str | None:
    lang = (upload.fields.get("language") or "").strip().lower()
    if lang and not (2 <= len(lang) <= 3 and lang.isalpha()):
        raise CozyError(
            "language must be an ISO-639-1 code such as 'en'", code="VALIDATION_ERROR", status=400, param="language"
        )
    return lang or None


async def transcriptions(request: Request) -> Response:
    """OpenAI `POST /v1/audio/transcriptions` (multipart)."""
    speech = _speech(request)
    upload = await read_upload(request, speech.limits.max_upload_bytes)
    if not upload.fields.get("model", "").strip():
        raise CozyError(
            "model is required (any name: the configured STT engine answers)",
            code="VALIDATION_ERROR",
            status=400,
            param="model",
        )
    fmt = upload.fields.get("response_format", "json").strip() or "json"
    if fmt not in tf.RESPONSE_FORMATS:
        raise CozyError(
            f"unsupported response_format {fmt!r} (supported: {', '.join(tf.RESPONSE_FORMATS)})",
            code="VALIDATION_ERROR",
            status=400,
            param="response_format",
        )
    language, prompt = _language(upload), upload.fields.get("prompt") or None
    granularities = upload.lists.get("timestamp_granularities[]", []) + upload.lists.get("timestamp_granularities", [])
    words = "word" in granularities
    if words and fmt != "verbose_json":
        raise CozyError(
            "timestamp_granularities needs response_format=verbose_json",
            code="VALIDATION_ERROR",
            status=400,
            param="timestamp_granularities",
        )
    audio = await speech.decode_upload(upload.data)
    if _flag(upload.fields.get("stream")):
        speech.require("stt")
        return EventStreamResponse(_stream(speech, audio, language, prompt))
    transcript = await speech.transcribe(
        audio, language=language, prompt=prompt, words=words, text_only=fmt in ("json", "text")
    )
    if fmt == "json":
        return _json(tf.as_json(transcript))
    if fmt == "verbose_json":
        return _json(tf.as_verbose(transcript, words=words, segments="segment" in granularities or not words))
    if fmt == "srt":
        return PlainTextResponse(tf.as_srt(transcript))
    if fmt == "vtt":
        return PlainTextResponse(tf.as_vtt(transcript), media_type="text/vtt")
    return PlainTextResponse(transcript.text)


async def _stream(
    speech: SpeechService, audio: PcmAudio, language: str | None, prompt: str | None
) -> AsyncGenerator[bytes, None]:
    """`transcript.text.delta` per decoded segment, then `transcript.text.done` (OpenAI SSE)."""
    parts: list[str] = []
    try:
        async for segment in speech.transcribe_segments(audio, language=language, prompt=prompt):
            delta = segment.text if parts else segment.text.lstrip()
            if not delta:
                continue
            parts.append(delta)
            yield b"data: " + orjson.dumps({"type": "transcript.text.delta", "delta": delta}) + b"\n\n"
    except CozyError as exc:
        yield b"data: " + orjson.dumps(error_body(exc)) + b"\n\n"
        return
    text = "".join(parts).strip()
    seconds = audio.duration_s
    done = {
        "type": "transcript.text.done",
        "text": text,
        "usage": {"type": "duration", "seconds": int(-(-seconds // 1))},
    }
    yield b"data: " + orjson.dumps(done) + b"\n\n"


async def stt(request: Request) -> Response:
    """`POST /v1/audio/stt`: multipart `file` (or a raw audio body) → text, language, duration, confidence."""
    speech = _speech(request)
    upload = await read_upload(request, speech.limits.max_upload_bytes, allow_raw=True)
    language, prompt = _language(upload), upload.fields.get("prompt") or None
    audio = await speech.decode_upload(upload.data)
    transcript: Transcript = await speech.transcribe(audio, language=language, prompt=prompt, text_only=True)
    return _json(
        {
            "text": transcript.text,
            "language": transcript.language,
            "duration": transcript.duration,
            "confidence": transcript.confidence,
        }
    )

"""OpenAPI entries of the speech endpoints (request bodies described inline, answers by type)."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERRORS = {"default": {"description": "Error", "content": {"application/json": {"schema": _ERROR}}}}
_AUDIO = {
    t: {"schema": {"type": "string", "format": "binary"}}
    for t in ("audio/mpeg", "audio/ogg", "audio/aac", "audio/flac", "audio/wav", "audio/pcm", "audio/basic")
}
_UPLOAD = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary"},
                "model": {"type": "string", "minLength": 1},
                "language": {"type": "string"},
                "prompt": {"type": "string"},
                "response_format": {"type": "string", "enum": ["json", "text", "verbose_json", "srt", "vtt"]},
                "stream": {"type": "boolean"},
                "timestamp_granularities[]": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["word", "segment"]},
                },
            },
        }
    }
}
_SPEECH = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["model", "input", "voice"],
            "properties": {
                "model": {"type": "string", "minLength": 1},
                "input": {"type": "string", "minLength": 1, "maxLength": 4096},
                "voice": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {"id": {"type": "string"}}}]},
                "response_format": {"type": "string", "enum": ["mp3", "opus", "aac", "flac", "wav", "pcm"]},
                "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0},
                "stream_format": {"type": "string", "enum": ["audio", "sse"]},
            },
        }
    }
}
_TTS = {
    "application/json": {
        "schema": {
            "type": "object",
            "required": ["text"],
            "properties": {
                "text": {"type": "string", "minLength": 1, "maxLength": 4096},
                "voice": {"type": "string"},
                "format": {"type": "string", "enum": ["mp3", "opus", "aac", "flac", "wav", "pcm", "ulaw", "alaw"]},
                "speed": {"type": "number", "minimum": 0.25, "maximum": 4.0},
            },
        }
    }
}


def _upload_needing_model() -> dict[str, Any]:
    """The OpenAI route requires `model` (any name); /v1/audio/stt does not."""
    schema = {**_UPLOAD["multipart/form-data"]["schema"], "required": ["file", "model"]}
    return {"multipart/form-data": {"schema": schema}}


def _op(summary: str, body: dict[str, Any], ok: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {
        "summary": summary,
        "description": description,
        "tags": ["speech"],
        "requestBody": {"required": True, "content": body},
        "responses": {"200": {"description": "OK", "content": ok}, **_ERRORS},
    }


def paths() -> dict[str, Any]:
    sse = {"text/event-stream": {"schema": {"type": "string"}}}
    json_obj = {"application/json": {"schema": {"type": "object"}}}
    return {
        "/v1/audio/transcriptions": {
            "post": _op(
                "Transcribe audio (OpenAI)",
                _upload_needing_model(),
                {**json_obj, "text/plain": {"schema": {"type": "string"}}, **sse},
                "wav, mp3, m4a/mp4/aac, ogg/opus, webm or flac up to 25 MB; stream=true answers with SSE.",
            )
        },
        "/v1/audio/stt": {"post": _op("Transcribe audio: text, language, duration, confidence", _UPLOAD, json_obj)},
        "/v1/audio/stt/stream": {
            "get": {
                "summary": "WebSocket: live transcription with partials",
                "description": "Upgrade to a WebSocket; see README 'Speech' for the messages.",
                "tags": ["speech"],
                "responses": {"101": {"description": "Switching protocols"}, **_ERRORS},
            }
        },
        "/v1/audio/speech": {"post": _op("Speak text (OpenAI)", _SPEECH, {**_AUDIO, **sse})},
        "/v1/audio/tts": {"post": _op("Speak text: the whole file", _TTS, _AUDIO)},
        "/v1/audio/tts/stream": {"post": _op("Speak text: SSE audio_chunk per sentence, then done", _TTS, sse)},
    }

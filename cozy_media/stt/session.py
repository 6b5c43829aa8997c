"""One live transcription stream: VAD segments the audio into utterances, the streaming
transcriber turns each into partials and a final. Used by `WS /v1/audio/stt/stream`; a voice
conversation actor can own one the same way.

Audio in: int16 16 kHz mono, any frame size, in order. Events out (`next_event()`), all carrying
the utterance number: `UtteranceStarted`, `UtterancePartial`, `UtteranceStopped`,
`UtteranceFinal`, `TranscriptionError` (and `UtteranceLikely` when asked for). Without VAD the
stream is one utterance until `commit()`.

Bounded: a ring of recent audio for the prefix padding (2 s), the transcriber's capped buffer
(an utterance longer than `max_utterance_s` is finalized and a new one begins), at most one
partial decode in flight, and finals that resolve in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from cozy_core.errors import CozyError

from ..vad.stream import SpeechPaused, SpeechStarted, SpeechStopped, StreamingVAD
from .base import SAMPLE_RATE, Transcript
from .streaming import PartialTranscript, StreamingTranscriber

_RING_SAMPLES = 2 * SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class UtteranceStarted:
    utterance: int
    audio_start_ms: float
    detected_ms: float | None = None  # where the VAD heard speech begin (audio_start_ms has the padding)


@dataclass(frozen=True, slots=True)
class UtterancePartial:
    utterance: int
    partial: PartialTranscript


@dataclass(frozen=True, slots=True)
class UtteranceStopped:
    utterance: int
    audio_end_ms: float


@dataclass(frozen=True, slots=True)
class UtteranceFinal:
    utterance: int
    transcript: Transcript
    audio_start_ms: float
    audio_end_ms: float
    latency_ms: float  # end of utterance declared → final ready


@dataclass(frozen=True, slots=True)
class TranscriptionError:
    utterance: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class UtteranceLikely:
    """The words so far, decoded speculatively when the speaker paused: if the pause becomes the
    end of speech, the final is this very decode. Lets a caller start work before the final."""

    utterance: int
    text: str


SessionEvent = (
    UtteranceStarted | UtterancePartial | UtteranceStopped | UtteranceFinal | TranscriptionError | UtteranceLikely
)


class TranscriptionSession:
    def __init__(
        self, transcriber: StreamingTranscriber, vad: StreamingVAD | None = None, *, likely_finals: bool = False
    ) -> None:
        self.transcriber = transcriber
        self.vad = vad
        self.likely_finals = likely_finals  # emit UtteranceLikely at each pause
        self._events: asyncio.Queue[SessionEvent | None] = asyncio.Queue()
        self._ring = np.zeros(_RING_SAMPLES, dtype=np.int16)  # circular: `_ring_at` is the next write
        self._ring_at = 0
        self._fed = 0  # samples received since the stream began
        self._utterance = 0
        self._active = False
        self._start_pos = 0  # stream position (samples) where the current utterance starts
        self._partial_task: asyncio.Task[None] | None = None
        self._finals: deque[asyncio.Task[None]] = deque()
        self._last_final: asyncio.Task[None] | None = None

    @property
    def position_ms(self) -> float:
        return self._fed * 1000.0 / SAMPLE_RATE

    async def next_event(self) -> SessionEvent | None:
        """The next event; None once `finish()` has delivered everything (end of the stream)."""
        return await self._events.get()

    def pending_events(self) -> int:
        return self._events.qsize()

    # --- audio in -----------------------------------------------------------------------------
    async def feed(self, samples: np.ndarray) -> None:
        """Take the next int16 16 kHz samples (`samples` may be reused by the caller afterwards)."""
        if len(samples) == 0:
            return
        self._remember(samples)
        if self.vad is None:
            if not self._active:
                self._begin(self._fed - len(samples))
            self._append(samples)
        else:
            if self._active:
                self._append(samples)
            for event in await self.vad.feed(samples):
                if isinstance(event, SpeechStarted) and not self._active:
                    self._begin(int(event.audio_start_ms * SAMPLE_RATE / 1000), event.detected_ms)
                elif isinstance(event, SpeechPaused) and self._active:
                    spec = self.transcriber.prefinalize()
                    if spec is not None and self.likely_finals:
                        spec.add_done_callback(functools.partial(self._likely, self._utterance))
                elif isinstance(event, SpeechStopped) and self._active:
                    self._end(int(event.audio_end_ms * SAMPLE_RATE / 1000))
        if self._active and self.transcriber.full:
            self._end(None)
            if self.vad is None or self.vad.speaking:
                self._begin(self._fed)
        if self._active and self.transcriber.partial_due() and self._partial_task is None:
            self._partial_task = asyncio.get_running_loop().create_task(self._run_partial(self._utterance))

    def _remember(self, samples: np.ndarray) -> None:
        k = len(samples)
        if k >= _RING_SAMPLES:
            self._ring[:] = samples[-_RING_SAMPLES:]
            self._ring_at = 0
        else:  # write in place: shifting a 2 s ring every frame would move 64 KB a frame
            at = self._ring_at
            first = min(k, _RING_SAMPLES - at)
            self._ring[at : at + first] = samples[:first]
            self._ring[: k - first] = samples[first:]
            self._ring_at = (at + k) % _RING_SAMPLES
        self._fed += k

    def _recent(self, n: int) -> np.ndarray:
        """The newest `n` samples remembered (n ≤ 2 s), oldest first."""
        start = (self._ring_at - n) % _RING_SAMPLES
        if start + n <= _RING_SAMPLES:
            return self._ring[start : start + n]
        return np.concatenate((self._ring[start:], self._ring[: self._ring_at]))

    def _likely(self, utterance: int, spec: asyncio.Task[Transcript]) -> None:
        if spec.cancelled() or spec.exception() is not None or utterance != self._utterance or not self._active:
            return  # superseded, failed, or the final is already on its way
        if text := spec.result().text.strip():
            self._events.put_nowait(UtteranceLikely(utterance, text))

    def _append(self, samples: np.ndarray) -> None:
        self.transcriber.append(samples)

    def _begin(self, start_pos: int, detected_ms: float | None = None) -> None:
        """Open an utterance at stream position `start_pos`, with the audio since then."""
        self._utterance += 1
        self._active = True
        start_pos = max(start_pos, self._fed - _RING_SAMPLES, 0)
        self._start_pos = start_pos
        back = self._fed - start_pos
        if back and self.vad is not None:
            self.transcriber.append(self._recent(back))
        self._events.put_nowait(UtteranceStarted(self._utterance, start_pos * 1000.0 / SAMPLE_RATE, detected_ms))

    def _end(self, end_pos: int | None) -> None:
        """Close the utterance (end of speech at `end_pos`, or now) and resolve its final later."""
        if not self._active:
            return
        self._active = False
        declared = time.perf_counter()
        end_pos = self._fed if end_pos is None else end_pos
        utterance, start = self._utterance, self._start_pos
        end_ms = (end_pos - start) * 1000.0 / SAMPLE_RATE
        self._events.put_nowait(UtteranceStopped(utterance, end_pos * 1000.0 / SAMPLE_RATE))
        job = self.transcriber.finalize(end_ms)
        previous = self._last_final
        task = asyncio.get_running_loop().create_task(
            self._deliver_final(utterance, job, previous, start, end_pos, declared)
        )
        self._last_final = task
        self._finals.append(task)
        while self._finals and self._finals[0].done():
            self._finals.popleft()

    async def _deliver_final(
        self,
        utterance: int,
        job: asyncio.Task[Transcript],
        previous: asyncio.Task[None] | None,
        start: int,
        end: int,
        declared: float,
    ) -> None:
        event: SessionEvent
        try:
            transcript = await job
            latency = (time.perf_counter() - declared) * 1000.0
            event = UtteranceFinal(
                utterance, transcript, start * 1000.0 / SAMPLE_RATE, end * 1000.0 / SAMPLE_RATE, latency
            )
        except CozyError as exc:
            event = TranscriptionError(utterance, exc.code, exc.message)
        except Exception as exc:  # a provider bug must end as an error event, not a silent stream
            event = TranscriptionError(utterance, "ENGINE_ERROR", f"transcription failed: {exc}")
        if previous is not None:  # finals leave in utterance order
            with contextlib.suppress(BaseException):
                await previous
        self._events.put_nowait(event)

    async def _run_partial(self, utterance: int) -> None:
        try:
            partial = await self.transcriber.decode_partial()
            if partial is not None and utterance == self._utterance and self._active:
                self._events.put_nowait(UtterancePartial(utterance, partial))
        except CozyError as exc:
            self._events.put_nowait(TranscriptionError(utterance, exc.code, exc.message))
        except Exception as exc:
            self._events.put_nowait(TranscriptionError(utterance, "ENGINE_ERROR", f"partial decode failed: {exc}"))
        finally:
            self._partial_task = None

    # --- control ------------------------------------------------------------------------------
    def commit(self) -> bool:
        """End the current utterance now (manual turn end); False when none is open."""
        if not self._active:
            return False
        self._end(None)
        return True

    async def finish(self) -> None:
        """End of input: finalize the open utterance, wait for every final, then end the events."""
        self.commit()
        if self._partial_task is not None:
            self._partial_task.cancel()
        for task in list(self._finals):
            with contextlib.suppress(BaseException):
                await task
        self._finals.clear()
        self._events.put_nowait(None)

    async def aclose(self) -> None:
        """Abandon everything (client gone)."""
        for task in [self._partial_task, *self._finals]:
            if task is not None:
                task.cancel()
        self._finals.clear()
        self.transcriber.reset()

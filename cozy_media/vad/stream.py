"""A per-session streaming voice activity detector with the OpenAI `server_vad` parameters.

Why per session and cheap: a voice session owns one of these for its whole life. It holds only
Silero's carried state (2×128 floats), the 64-sample context and fewer than 512 pending
samples, so it costs nothing per frame beyond copying samples in.

Events (positions are ms since the first sample fed, like Realtime's `audio_start_ms`):
`SpeechStarted` (start minus the prefix padding), `SpeechPaused` (probability fell below the
release threshold: a candidate end, the moment to pre-decode the transcript), `SpeechResumed`,
`SpeechStopped` (the pause lasted `silence_duration_ms`; `audio_end_ms` is where speech ended).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .batch import batcher_for

if TYPE_CHECKING:
    from .batch import VadBatcher

SAMPLE_RATE = 16000
CHUNK = 512
CONTEXT = 64


class _Model(Protocol):
    def new_state(self) -> np.ndarray: ...

    def step(self, window: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]: ...


@dataclass(frozen=True)
class VadParams:
    """OpenAI server_vad parameters; `release` defaults to threshold − 0.15 (Silero's hysteresis)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    release: float | None = None

    @property
    def release_threshold(self) -> float:
        return self.release if self.release is not None else max(0.01, self.threshold - 0.15)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    audio_start_ms: float  # includes the prefix padding (never below 0)
    detected_ms: float  # where the probability first crossed the threshold


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    at_ms: float


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    at_ms: float


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    audio_end_ms: float  # where speech ended (the start of the silence that ended it)
    detected_ms: float  # when the silence had lasted silence_duration_ms


VadEvent = SpeechStarted | SpeechPaused | SpeechResumed | SpeechStopped


class StreamingVAD:
    """Feed 16 kHz int16 samples in any frame size; get speech events back.

    `process()` runs the model synchronously (use it inside a worker); `feed()` hands the complete
    chunks to the process-wide batcher, which runs every live session's chunks in one model call
    on the inference pool's light lane. Calls must not overlap (a session feeds its audio in order).
    """

    def __init__(self, model: _Model, params: VadParams | None = None) -> None:
        self.model = model
        self.params = params or VadParams()
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(CHUNK, dtype=np.float32)
        self._pending_len = 0
        self._batcher: tuple[asyncio.AbstractEventLoop, VadBatcher] | None = None  # looked up once per loop
        self.reset()

    def reset(self) -> None:
        """Forget all state (a new stream starts at position 0)."""
        self.state = self.model.new_state()
        self._context[:] = 0.0
        self._pending_len = 0
        self.position = 0  # samples run through the model
        self.speaking = False
        self.probability = 0.0
        self._pause_at: int | None = None
        self._busy = False

    def update(self, params: VadParams) -> None:
        """Change parameters mid-stream (Realtime `session.update`)."""
        self.params = params

    @property
    def position_ms(self) -> float:
        return self.position * 1000.0 / SAMPLE_RATE

    def pending_chunks(self, extra: int) -> int:
        """How many model chunks `extra` more samples would complete."""
        return (self._pending_len + extra) // CHUNK

    async def feed(self, samples: np.ndarray) -> list[VadEvent]:
        """Buffer `samples`; complete 32 ms chunks go to the model off the event loop, batched."""
        windows = self.take_windows(samples)
        if windows is None:
            return []
        if self._busy:
            raise RuntimeError("StreamingVAD.feed calls must not overlap")
        self._busy = True
        loop = asyncio.get_running_loop()
        if self._batcher is None or self._batcher[0] is not loop:
            self._batcher = (loop, batcher_for(self.model))
        try:
            probs = await self._batcher[1].run(self, windows)
        finally:
            self._busy = False
        return self.apply(probs)

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        """Run every complete chunk now (blocking); returns the events in order."""
        windows = self.take_windows(samples)
        if windows is None:
            return []
        probs = []
        for window in windows:
            prob, self.state = self.model.step(window[None, :], self.state)
            probs.append(prob)
        return self.apply(probs)

    def take_windows(self, samples: np.ndarray) -> np.ndarray | None:
        """Buffer `samples`; return the model windows (k × [64 context + 512]) they complete.

        The context of a window is the previous raw audio, so every window of a frame is known
        before the model runs; only the recurrent state has to pass from one chunk to the next.
        """
        n = len(samples)
        k = (self._pending_len + n) // CHUNK
        if k == 0:
            self._buffer(samples)
            return None
        used = k * CHUNK - self._pending_len  # samples of this frame inside the k chunks
        buf = np.empty(CONTEXT + k * CHUNK, dtype=np.float32)
        buf[:CONTEXT] = self._context
        buf[CONTEXT : CONTEXT + self._pending_len] = self._pending[: self._pending_len]
        _to_float(samples[:used], buf[CONTEXT + self._pending_len :])
        self._context[:] = buf[-CONTEXT:]
        self._pending_len = 0
        self._buffer(samples[used:])
        # Overlapping windows as a view of the buffer (the batcher copies each row into its batch).
        return np.lib.stride_tricks.as_strided(buf, (k, CONTEXT + CHUNK), (CHUNK * 4, 4), writeable=False)

    def apply(self, probs: list[float]) -> list[VadEvent]:
        """Turn the model's probabilities for the taken windows (in order) into events."""
        events: list[VadEvent] = []
        for prob in probs:
            start = self.position
            self.position += CHUNK
            self.probability = prob
            self._decide(prob, start, events)
        return events

    def _buffer(self, samples: np.ndarray) -> None:
        k = len(samples)
        if k:
            _to_float(samples, self._pending[self._pending_len : self._pending_len + k])
            self._pending_len += k

    def _decide(self, prob: float, chunk_start: int, events: list[VadEvent]) -> None:
        p = self.params
        if not self.speaking:
            if prob >= p.threshold:
                self.speaking = True
                self._pause_at = None
                pad = p.prefix_padding_ms * SAMPLE_RATE // 1000
                events.append(SpeechStarted(_ms(max(0, chunk_start - pad)), _ms(chunk_start)))
            return
        if prob >= p.threshold:
            if self._pause_at is not None:
                self._pause_at = None
                events.append(SpeechResumed(_ms(chunk_start)))
            return
        if prob < p.release_threshold:
            if self._pause_at is None:
                self._pause_at = chunk_start
                events.append(SpeechPaused(_ms(chunk_start)))
            if self.position - self._pause_at >= p.silence_duration_ms * SAMPLE_RATE // 1000:
                events.append(SpeechStopped(_ms(self._pause_at), _ms(self.position)))
                self.speaking = False
                self._pause_at = None


_SCALE = np.float32(1.0 / 32768.0)  # a float32 scalar: int16 x float32 runs in float32, not via float64


def _to_float(samples: np.ndarray, out: np.ndarray) -> None:
    if samples.dtype == np.int16:
        np.multiply(samples, _SCALE, out=out)
    else:
        out[:] = samples


def _ms(samples: int) -> float:
    return samples * 1000.0 / SAMPLE_RATE

"""Semantic end of turn (OpenAI `semantic_vad`): Silero finds the pauses, Smart Turn decides
whether a pause ends the turn.

How: a `StreamingVAD` whose silence window is the eagerness maximum (low 8 s, medium 4 s,
high 2 s; auto = medium). When a pause has lasted `check_ms` (200 ms) the turn's audio so far
(the newest 8 s, from the speech start with its prefix padding) goes to Smart Turn on the
inference pool; "complete" ends the speech right there (`SpeechStopped` at the pause), and
"incomplete" leaves the base detector waiting, so the turn ends at the maximum at the latest.
One question per pause: the speaker resuming cancels it, a new pause asks again.

Drop-in for `StreamingVAD` (same events, same `feed`): the transcription session and the
batched Silero path are unchanged. Only `feed()` is supported (the question is an asyncio task).
The extra cost is per session and bounded: an 8 s int16 ring (256 KB) written in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable

import numpy as np

from ..vad.stream import SAMPLE_RATE, SpeechResumed, SpeechStarted, SpeechStopped, StreamingVAD, VadEvent, VadParams
from .features import WINDOW_SAMPLES
from .smart_turn import COMPLETE_THRESHOLD, preload, turn_probability

log = logging.getLogger("cozy.turn")

EAGERNESS_MAX_MS = {"low": 8000, "medium": 4000, "high": 2000, "auto": 4000}
CHECK_MS = 200

Predict = Callable[[np.ndarray], Awaitable[float]]


class SemanticVAD(StreamingVAD):
    def __init__(
        self,
        model: object,
        params: VadParams | None = None,
        *,
        eagerness: str = "auto",
        check_ms: int = CHECK_MS,
        predict: Predict = turn_probability,
    ) -> None:
        self.max_wait_ms = EAGERNESS_MAX_MS[eagerness]
        self.check_ms = check_ms
        self._predict = predict
        self._ring = np.zeros(WINDOW_SAMPLES, dtype=np.int16)  # the newest 8 s, circular
        self._ring_at = 0
        self._fed = 0
        # (pause start, the Smart Turn call; None once it answered "incomplete")
        self._question: tuple[int, asyncio.Task[float] | None] | None = None
        self.turns_semantic = 0  # turns Smart Turn ended (what the benchmark and tests read)
        self.turns_max = 0  # turns that waited to the eagerness maximum
        super().__init__(model, self._with_max(params or VadParams()))  # type: ignore[arg-type]
        if predict is turn_probability:
            with contextlib.suppress(RuntimeError):  # no event loop here: it loads at the first pause
                preload()

    @classmethod
    def around(cls, stream: StreamingVAD, eagerness: str, **kwargs: object) -> SemanticVAD:
        """The semantic variant of a detector an engine made (same Silero model and threshold)."""
        return cls(stream.model, stream.params, eagerness=eagerness, **kwargs)  # type: ignore[arg-type]

    @property
    def asking(self) -> bool:
        """A Smart Turn question is in flight (its answer is applied at the next chunk)."""
        return self._question is not None and self._question[1] is not None and not self._question[1].done()

    def _with_max(self, params: VadParams) -> VadParams:
        return dataclasses.replace(params, silence_duration_ms=self.max_wait_ms)

    def reset(self) -> None:
        super().reset()
        self._drop_question()
        self._ring_at = self._fed = 0
        self._start = 0  # where the current speech began (samples, with its prefix padding)

    def update(self, params: VadParams) -> None:
        super().update(self._with_max(params))

    def take_windows(self, samples: np.ndarray) -> np.ndarray | None:
        self._remember(samples)
        return super().take_windows(samples)

    def apply(self, probs: list[float]) -> list[VadEvent]:
        events = super().apply(probs)
        for event in events:
            if isinstance(event, SpeechStarted):
                self._start = int(event.audio_start_ms * SAMPLE_RATE / 1000)
            if isinstance(event, SpeechStopped):
                self.turns_max += 1
            if isinstance(event, SpeechStarted | SpeechResumed | SpeechStopped):
                self._drop_question()
        pause = self._pause_at
        if not self.speaking or pause is None:
            return events
        if self._question is None or self._question[0] != pause:
            if self.position - pause >= self.check_ms * SAMPLE_RATE // 1000:
                self._ask(pause)
        elif (task := self._question[1]) is not None and task.done():
            if not self._complete(task):
                self._question = (pause, None)  # keep waiting: the maximum ends this pause
                return events
            self._question = None
            self.speaking = False
            self._pause_at = None
            self.turns_semantic += 1
            events.append(SpeechStopped(pause * 1000.0 / SAMPLE_RATE, self.position_ms))
        return events

    def _ask(self, pause: int) -> None:
        self._drop_question()
        task = asyncio.get_running_loop().create_task(self._predict(self._turn_audio()))
        self._question = (pause, task)

    def _complete(self, task: asyncio.Task[float]) -> bool:
        if task.cancelled():
            return False
        if (exc := task.exception()) is not None:  # no model: the turn ends at the maximum
            log.warning("smart turn failed; waiting for the eagerness maximum: %s", exc)
            return False
        return task.result() > COMPLETE_THRESHOLD

    def _drop_question(self) -> None:
        question = getattr(self, "_question", None)
        if question is not None and question[1] is not None:
            question[1].cancel()  # no-op when it has answered
        self._question = None

    def _remember(self, samples: np.ndarray) -> None:
        if samples.dtype != np.int16:
            samples = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
        k = len(samples)
        if k >= WINDOW_SAMPLES:
            self._ring[:] = samples[-WINDOW_SAMPLES:]
            self._ring_at = 0
        else:
            at = self._ring_at
            first = min(k, WINDOW_SAMPLES - at)
            self._ring[at : at + first] = samples[:first]
            self._ring[: k - first] = samples[first:]
            self._ring_at = (at + k) % WINDOW_SAMPLES
        self._fed += k

    def _turn_audio(self) -> np.ndarray:
        """A copy of the turn so far: from its start (prefix padding included), at most 8 s."""
        n = max(0, min(self._fed - self._start, WINDOW_SAMPLES, self._fed))
        start = (self._ring_at - n) % WINDOW_SAMPLES
        if start + n <= WINDOW_SAMPLES:
            return self._ring[start : start + n].copy()
        return np.concatenate((self._ring[start:], self._ring[: self._ring_at]))

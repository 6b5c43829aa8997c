"""Input audio of a Realtime session: wire format → 16 kHz PCM → VAD + streaming STT.

The transcription session (cozy_media) decodes while the user speaks and pre-decodes during the
VAD silence window, so the final transcript is ready (or nearly) when end of speech is declared.
Its events are pumped into the actor's mailbox; speech start goes on the control lane, because
it may have to interrupt a response (barge-in) and must not wait behind queued audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cozy_media.audio import denoise
from cozy_media.audio.echo import EchoCanceller
from cozy_media.audio.g711 import alaw_decode, ulaw_decode
from cozy_media.audio.resample import Resampler
from cozy_media.stt.session import SessionEvent, TranscriptionSession, UtteranceStarted
from cozy_media.vad.stream import VadParams
from cozy_media.workers import get_pool

from .config import SemanticVad, ServerVad, SessionConfig

STT_RATE = 16000
log = logging.getLogger("cozy.realtime")


@dataclass(slots=True)
class AudioEvent:
    """A VAD/STT event for the session, posted by the pump."""

    event: SessionEvent
    generation: int


class InputAudio:
    def __init__(
        self,
        speech: Any,
        config: SessionConfig,
        tell: Callable[..., None],
        language: str | None = None,
        *,
        echo: bool = False,
    ) -> None:
        self.speech = speech
        self.language = language  # the personality's: picks the STT route unless transcription.language does
        self.tell = tell
        self.generation = 0
        # Echo cancellation (cozy_media/audio/echo.py): the reply audio the session sends is the
        # reference; one canceller for the session's life (AEC3 keeps what it learnt of the room).
        self.echo: EchoCanceller | None = EchoCanceller() if echo else None
        self._stream: TranscriptionSession | None = None
        self._pump: asyncio.Task[None] | None = None
        self._key: tuple[Any, ...] | None = None
        self.configure(config)

    @property
    def vad(self) -> bool:
        return self._stream is not None and self._stream.vad is not None

    def configure(self, config: SessionConfig) -> None:
        """(Re)build the pipeline when the input format, VAD or transcription settings change."""
        inp = config.audio.input
        td = inp.turn_detection
        tr = inp.transcription
        nr = inp.noise_reduction is not None
        key = (inp.format.type, td.model_dump() if td else None, tr.model_dump() if tr else None, nr)
        if key == self._key:
            return
        # semantic_vad: Silero's pauses, Smart Turn's verdict, the eagerness cap (cozy_media/turn).
        semantic = td.eagerness if isinstance(td, SemanticVad) else None
        params = (
            VadParams(td.threshold, td.prefix_padding_ms, td.silence_duration_ms) if isinstance(td, ServerVad) else None
        )
        # Opened before the old pipeline closes: an engine that is missing refuses the update and
        # leaves the session as it was.
        route = self.speech.for_language(tr.language if tr and tr.language else self.language)
        stream = route.open_stream(
            language=(tr.language if tr else None),
            prompt=(tr.prompt if tr else None),
            vad=params,
            use_vad=td is not None,
            semantic=semantic,
            likely_finals=td is not None,  # the context prefetch at pauses (VoiceTurns)
        )
        self._key = key
        self._close_stream()
        self.generation += 1
        self.format = inp.format.type
        rate = 24000 if self.format == "audio/pcm" else 8000
        # Medium quality: 9 µs instead of 35 µs a 40 ms frame (at 100 calls, 23 ms of loop time a
        # second instead of 88), and VAD and Whisper see no difference at 16 kHz.
        self._resampler = Resampler(rate, STT_RATE, quality="MQ")
        # noise_reduction: RNNoise works at 48 kHz, so the input goes up to it and down to 16 kHz.
        self._denoise = (
            (Resampler(rate, denoise.RATE, "MQ"), denoise.Denoiser(), Resampler(denoise.RATE, STT_RATE, "MQ"))
            if nr
            else None
        )
        self._stream = stream
        self._pump = asyncio.get_running_loop().create_task(self._run_pump(self._stream, self.generation))

    def restart(self, config: SessionConfig) -> None:
        """A fresh pipeline (input_audio_buffer.clear): the cleared audio never reaches the STT."""
        self._key = None
        self.configure(config)

    @property
    def speaking(self) -> bool:
        """The VAD hears speech now (ahead of the UtteranceStarted event still in the mailbox)."""
        return self._stream is not None and self._stream.vad is not None and self._stream.vad.speaking

    @property
    def position_ms(self) -> float:
        """Input audio (ms) the current pipeline has taken in: VAD event times are on this clock."""
        return self._stream.position_ms if self._stream is not None else 0.0

    def to_16k(self, data: bytes, arrived: float | None = None) -> np.ndarray:
        if self.format == "audio/pcmu":
            samples = ulaw_decode(data)
        elif self.format == "audio/pcma":
            samples = alaw_decode(data)
        else:
            samples = np.frombuffer(data, dtype="<i2")
        if self._denoise is not None:
            up, suppressor, down = self._denoise
            out = down.process(suppressor.process(up.process(samples)))
        else:
            out = self._resampler.process(samples)
        return out if self.echo is None else self.echo.process(out, arrived)

    def feed(self, data: bytes) -> Awaitable[None]:
        """The stream's own feed (not wrapped in one more coroutine: this runs for every frame)."""
        assert self._stream is not None
        # RNNoise (~0.5 ms of CPU a 100 ms chunk) and AEC3 (~1 ms while a reply plays) run on the
        # pool's light lane, not the loop; the arrival time places the chunk on the echo's clock.
        if self._denoise is not None or (self.echo is not None and self.echo.playing()):
            return self._feed_processed(data, time.perf_counter())
        return self._stream.feed(self.to_16k(data))

    async def _feed_processed(self, data: bytes, arrived: float) -> None:
        assert self._stream is not None
        await self._stream.feed(await get_pool().run_light(self.to_16k, data, arrived))

    def commit(self) -> bool:
        return self._stream is not None and self._stream.commit()

    async def _run_pump(self, stream: TranscriptionSession, generation: int) -> None:
        while True:
            event = await stream.next_event()
            try:
                self.tell(AudioEvent(event, generation), control=isinstance(event, UtteranceStarted))
            except Exception:
                return  # the actor is gone

    def _close_stream(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self._stream is not None:
            stream = self._stream
            task = asyncio.get_running_loop().create_task(stream.aclose())
            task.add_done_callback(lambda t: None)
        self._stream = self._pump = None

    async def close(self) -> None:
        if self.echo is not None and self.echo.frames:
            e = self.echo
            log.info(
                "echo cancellation: %d frames (%.1f s), ERLE %.1f dB, %d gated, %d passed, shift %.2f s, %.1f ms CPU/s",
                e.frames,
                e.frames / 100,
                e.erle_db(),
                e.gated,
                e.passed,
                e.shift_s,
                1000 * e.cpu_s / max(0.01, e.frames / 100),
            )
        if self._pump is not None:
            self._pump.cancel()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await self._stream.aclose()
        self._stream = self._pump = None

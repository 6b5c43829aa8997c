"""Per-session speech synthesis: text (whole, or streamed from an LLM) in, audio chunks out.

Why this shape: a voice turn must start speaking at the first sentence, keep the next sentence
synthesizing while the current one plays (one chunk of lookahead), and stop at once on barge-in:
`cancel()` (or cancelling the consuming task) stops between chunks and abandons the lookahead.
Each `SpeechChunk` carries its text, so the caller can tell what was actually spoken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from ..audio.frames import PcmAudio
from ..audio.resample import resample
from ..workers import NORMAL, URGENT, get_pool, inference_priority
from .base import TTSEngine
from .chunker import SentenceChunker

OUTPUT_RATE = 24000  # OpenAI `pcm` and Realtime `audio/pcm`


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    index: int
    text: str
    audio: PcmAudio  # at the synthesizer's sample rate


class SpeechSynthesizer:
    def __init__(
        self,
        engine: TTSEngine,
        *,
        voice: str,
        speed: float = 1.0,
        sample_rate: int | None = OUTPUT_RATE,
        chunker: SentenceChunker | None = None,
        lookahead: int = 1,
    ) -> None:
        self.engine = engine
        self.voice = voice
        self.speed = speed
        self.sample_rate = sample_rate  # None: the voice's own rate
        self.chunker = chunker or SentenceChunker()
        self.lookahead = max(0, lookahead)
        self._cancelled = False
        # Chunks already being synthesized before the text arrived (a reply prepared during the
        # speaker's pause): a chunk with exactly this text takes its audio instead of synthesizing.
        self.primed: dict[str, asyncio.Task[PcmAudio]] = {}

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Stop before the next chunk (barge-in); pending synthesis is abandoned."""
        self._cancelled = True

    async def stream(self, text: str | AsyncIterable[str]) -> AsyncIterator[SpeechChunk]:
        """Audio chunks in order, each as soon as it is synthesized."""
        self._cancelled = False
        self.chunker.reset()
        texts: asyncio.Queue[str | None] = asyncio.Queue()
        producer = asyncio.get_running_loop().create_task(self._produce(text, texts))
        pending: deque[tuple[str, asyncio.Task[PcmAudio]]] = deque()
        index = 0
        reading = True
        try:
            while True:
                while reading and len(pending) < 1 + self.lookahead and not (pending and texts.empty()):
                    item = await texts.get()
                    if item is None:
                        reading = False
                        break
                    task = self.primed.pop(item, None)
                    # The first sentence is what the listener waits for now (URGENT); each later one
                    # has the sentence before it still to play (NORMAL).
                    first = index == 0 and not pending
                    if task is None or task.cancelled():
                        with inference_priority(URGENT if first else NORMAL):
                            task = asyncio.get_running_loop().create_task(
                                self.engine.synthesize(item, voice=self.voice, speed=self.speed)
                            )
                    elif first:
                        get_pool().promote(task)  # synthesized ahead, during the speaker's pause
                    pending.append((item, task))
                if not pending or self._cancelled:
                    break
                chunk_text, task = pending.popleft()
                audio = await task
                if self._cancelled:
                    break
                if self.sample_rate and audio.sample_rate != self.sample_rate:
                    audio = PcmAudio(resample(audio.samples, audio.sample_rate, self.sample_rate), self.sample_rate)
                yield SpeechChunk(index, chunk_text, audio)
                index += 1
            if producer.done() and not producer.cancelled() and producer.exception() is not None:
                raise producer.exception()  # type: ignore[misc]
        finally:
            producer.cancel()
            for _, task in pending:
                task.cancel()
            for task in self.primed.values():  # prepared for words the reply did not say
                task.cancel()
            self.primed.clear()
            with contextlib.suppress(BaseException):
                await producer

    async def _produce(self, source: str | AsyncIterable[str], out: asyncio.Queue[str | None]) -> None:
        try:
            if isinstance(source, str):
                for chunk in self.chunker.split(source):
                    out.put_nowait(chunk)
            else:
                async for piece in source:
                    for chunk in self.chunker.push(piece):
                        out.put_nowait(chunk)
                    if self._cancelled:
                        return
                for chunk in self.chunker.flush():
                    out.put_nowait(chunk)
        finally:
            out.put_nowait(None)

"""Speech output of one Realtime response: text in (as the model streams it), paced audio out.

Pacing is the point: audio leaves at real time plus a small lead (default 200 ms), not as fast
as TTS makes it. The server can only take back what it has not sent, so pacing is what makes
"the bot stops talking" true at the client on barge-in, and it makes truncation exact: we know
how many ms were sent and which sentence each ms belongs to.

Synthesis and sending are two tasks so a reply can be *paused* (pause-then-decide barge-in):
sending stops at once, synthesis runs on into a bounded buffer (`ahead_ms` past the send
position), and `resume()` rewinds the send position to the first sample the listener has not
heard (the unplayed lead was dropped at the client) and carries on: no repeat, no gap.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import numpy as np

from cozy_actors.observability.metrics import TURN_STAGE, labelled
from cozy_media.audio.g711 import alaw_encode, ulaw_encode
from cozy_media.tts.synthesizer import SpeechSynthesizer

FRAME_MS = 100  # one output_audio.delta carries this much audio
AHEAD_MS = 3000.0  # synthesized audio kept ready past the send position (bounds a paused reply)
_RATES = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}


class SpeechOutput:
    def __init__(
        self,
        synthesizer: SpeechSynthesizer,
        fmt: str,
        send: Callable[[str], None],
        *,
        lead_ms: float = 200.0,
        ahead_ms: float = AHEAD_MS,
        echo: Any = None,
    ) -> None:
        self.synth = synthesizer
        self.fmt = fmt
        self.rate = _RATES.get(fmt, 24000)
        self.send = send  # base64 delta -> one output_audio.delta event
        self.echo = echo  # the session's EchoCanceller: what was sent, when, is its reference
        self.lead_s = lead_ms / 1000.0
        self.ahead_ms = max(ahead_ms, 2.0 * FRAME_MS)
        self.sent_ms = 0.0  # the send position: audio up to here has left (rewound by a resume)
        self.spoken: list[tuple[float, float, str]] = []  # (start_ms, end_ms, text) per sentence made
        self._texts: asyncio.Queue[str | None] = asyncio.Queue()
        self._chunks: list[np.ndarray] = []  # synthesized audio, in order
        self._starts: list[int] = []  # first sample of each chunk
        self._total = 0  # samples synthesized
        self._synth_done = False
        self._more = asyncio.Event()  # new audio, or synthesis ended
        self._room = asyncio.Event()  # the sender moved on: synthesis may run further ahead
        self._producer: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._origin: float | None = None  # perf_counter at which sample 0 would have been heard
        self.paused_ms: float | None = None  # where a paused reply stopped being heard
        self.first_audio_at: float | None = None
        self._first_text_at: float | None = None  # the reply's first text in: the TTS clock starts

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._producer = loop.create_task(self._produce(), name="realtime-speech-synth")
        if self.paused_ms is None:
            self._sender = loop.create_task(self._send_all(), name="realtime-speech")

    def push(self, text: str) -> None:
        if self._first_text_at is None:
            self._first_text_at = time.perf_counter()
        self._texts.put_nowait(text)

    def end(self) -> None:
        self._texts.put_nowait(None)

    async def wait(self) -> None:
        """Until the last sample has been sent; CancelledError when stopped (barge-in, cancel)."""
        if self._done is not None:
            await asyncio.shield(self._done)

    def stop(self) -> None:
        """Barge-in / cancel: no further audio leaves, synthesis is abandoned."""
        self.synth.cancel()
        if self.echo is not None:
            self.echo.stop_reference()
        for task in (self._sender, self._producer):
            if task is not None and not task.done():
                task.cancel()
        if self._done is not None and not self._done.done():
            self._done.cancel()

    @property
    def paused(self) -> bool:
        return self.paused_ms is not None

    def pause(self, at: float | None = None) -> float:
        """Stop sending now (synthesis goes on, bounded); returns the ms the listener has heard."""
        if self.paused_ms is None:
            self.paused_ms = float(int(self.played_ms(at)))  # whole ms: the client's audio_end_ms, exactly
            if self.echo is not None:  # what was sent but will not play is no echo to come
                self.echo.stop_reference()
            if self._sender is not None and not self._sender.done():
                self._sender.cancel()
            self._sender = None
        return self.paused_ms

    def resume(self) -> None:
        """Send again from the first unheard sample, paced as at the start (the lead goes first)."""
        if self.paused_ms is None:
            return
        at, self.paused_ms = self.paused_ms, None
        self.sent_ms = at
        self._origin = None
        self._room.set()
        if self._done is not None and not self._done.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_all(), name="realtime-speech")

    def played_ms(self, at: float | None = None) -> float:
        """How much the listener can have played by `at` (now): sent minus the unplayed lead."""
        if self.paused_ms is not None:
            return self.paused_ms
        if self._origin is None:
            return self.sent_ms  # nothing sent since the (re)start: heard up to the send position
        now = time.perf_counter() if at is None else at
        return max(0.0, min(self.sent_ms, (now - self._origin) * 1000.0))

    def heard_text(self, played_ms: float) -> str:
        return words_heard(self.spoken, played_ms)

    def played_text(self, from_ms: float, to_ms: float) -> str:
        return words_played(self.spoken, from_ms, to_ms)

    async def _source(self) -> AsyncIterator[str]:
        while (text := await self._texts.get()) is not None:
            yield text

    async def _produce(self) -> None:
        try:
            async for chunk in self.synth.stream(self._source()):
                samples = chunk.audio.samples
                start_ms = self._total * 1000.0 / self.rate
                self.spoken.append((start_ms, start_ms + len(samples) * 1000.0 / self.rate, chunk.text))
                if not self._chunks and self._first_text_at is not None:  # first text -> first audio made
                    labelled(TURN_STAGE, "tts_first_chunk").observe(time.perf_counter() - self._first_text_at)
                self._starts.append(self._total)
                self._chunks.append(samples)
                self._total += len(samples)
                self._more.set()
                while self._total * 1000.0 / self.rate - self.sent_ms > self.ahead_ms:
                    self._room.clear()
                    await self._room.wait()
        except Exception as exc:  # a TTS failure ends the reply's audio as it did when one task did both
            if self._done is not None and not self._done.done():
                self._done.set_exception(exc)
        finally:
            self._synth_done = True
            self._more.set()

    async def _send_all(self) -> None:
        frame = int(self.rate * FRAME_MS / 1000)
        pos = round(self.sent_ms * self.rate / 1000.0)
        while True:
            if pos >= self._total:
                if self._synth_done:
                    break
                self._more.clear()
                await self._more.wait()
                continue
            i = bisect.bisect_right(self._starts, pos) - 1
            chunk = self._chunks[i]
            offset = pos - self._starts[i]
            piece = chunk[offset : offset + frame]
            await self._pace()
            self.send(base64.b64encode(self._encode(piece)).decode())
            if self.echo is not None:
                self.echo.reference(piece, self.rate)
            if self.first_audio_at is None:
                self.first_audio_at = time.perf_counter()
            pos += len(piece)
            self.sent_ms = pos * 1000.0 / self.rate
            self._room.set()
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def _pace(self) -> None:
        now = time.perf_counter()
        if self._origin is None:
            self._origin = now - self.sent_ms / 1000.0  # a resume: the clock goes on from the heard ms
            return
        due = self._origin + self.sent_ms / 1000.0 - self.lead_s
        if due > now:
            await asyncio.sleep(due - now)

    def _encode(self, samples: np.ndarray) -> bytes:
        if self.fmt == "audio/pcmu":
            return ulaw_encode(samples)
        if self.fmt == "audio/pcma":
            return alaw_encode(samples)
        return samples.astype("<i2", copy=False).tobytes()


def output_rate(fmt: str) -> int:
    return _RATES.get(fmt, 24000)


def describe(output: SpeechOutput | None) -> dict[str, Any]:
    if output is None:
        return {}
    return {"sent_ms": round(output.sent_ms, 1), "sentences": len(output.spoken)}


def words_heard(spoken: Iterable[tuple[float, float, str]], played_ms: float) -> str:
    """The words of the sentences heard up to `played_ms` (a sentence cut mid-way is cut by time)."""
    words: list[str] = []
    for start, end, text in spoken:
        if played_ms >= end:
            words.append(text)
        elif played_ms > start:
            share = (played_ms - start) / max(1.0, end - start)
            cut = text.split()
            words.append(" ".join(cut[: int(len(cut) * share)]))
            break
        else:
            break
    return " ".join(w for w in words if w).strip()


def words_played(spoken: Iterable[tuple[float, float, str]], from_ms: float, to_ms: float) -> str:
    """The words played between `from_ms` and `to_ms` (by time within a sentence, one word of slack
    each side): what an echo heard over that stretch can be made of."""
    words: list[str] = []
    for start, end, text in spoken:
        if end <= from_ms or start >= to_ms:
            continue
        cut = text.split()
        share = len(cut) / max(1.0, end - start)
        first = max(0, int((from_ms - start) * share) - 1)
        last = min(len(cut), int((to_ms - start) * share) + 2)
        words.extend(cut[first:last])
    return " ".join(words)

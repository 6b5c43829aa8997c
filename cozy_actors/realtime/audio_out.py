"""Speech output of one Realtime response: text in (as the model streams it), paced audio out.

Pacing is the point: audio leaves at real time plus a small lead (default 200 ms), not as fast
as TTS makes it. The server can only take back what it has not sent, so pacing is what makes
"the bot stops talking" true at the client on barge-in, and it makes truncation exact: we know
how many ms were sent and which sentence each ms belongs to.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from cozy_media.audio.g711 import alaw_encode, ulaw_encode
from cozy_media.tts.synthesizer import SpeechSynthesizer

FRAME_MS = 100  # one output_audio.delta carries this much audio
_RATES = {"audio/pcm": 24000, "audio/pcmu": 8000, "audio/pcma": 8000}


class SpeechOutput:
    def __init__(
        self,
        synthesizer: SpeechSynthesizer,
        fmt: str,
        send: Callable[[str], None],
        *,
        lead_ms: float = 200.0,
    ) -> None:
        self.synth = synthesizer
        self.fmt = fmt
        self.rate = _RATES.get(fmt, 24000)
        self.send = send  # base64 delta -> one output_audio.delta event
        self.lead_s = lead_ms / 1000.0
        self.sent_ms = 0.0
        self.spoken: list[tuple[float, float, str]] = []  # (start_ms, end_ms, text) per sentence sent
        self._texts: asyncio.Queue[str | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._started_at: float | None = None
        self.first_audio_at: float | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="realtime-speech")

    def push(self, text: str) -> None:
        self._texts.put_nowait(text)

    def end(self) -> None:
        self._texts.put_nowait(None)

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    def stop(self) -> None:
        """Barge-in / cancel: no further audio leaves, synthesis is abandoned."""
        self.synth.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def heard_text(self, played_ms: float) -> str:
        """The words of the sentences heard up to `played_ms` (a sentence cut mid-way is cut by time)."""
        words: list[str] = []
        for start, end, text in self.spoken:
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

    async def _source(self) -> AsyncIterator[str]:
        while (text := await self._texts.get()) is not None:
            yield text

    async def _run(self) -> None:
        frame = int(self.rate * FRAME_MS / 1000)
        async for chunk in self.synth.stream(self._source()):
            samples = chunk.audio.samples
            # Recorded before sending, so a barge-in mid-sentence can still tell what was heard.
            self.spoken.append((self.sent_ms, self.sent_ms + len(samples) * 1000.0 / self.rate, chunk.text))
            for at in range(0, len(samples), frame):
                piece = samples[at : at + frame]
                await self._pace()
                self.send(base64.b64encode(self._encode(piece)).decode())
                if self.first_audio_at is None:
                    self.first_audio_at = time.perf_counter()
                self.sent_ms += len(piece) * 1000.0 / self.rate

    async def _pace(self) -> None:
        now = time.perf_counter()
        if self._started_at is None:
            self._started_at = now
            return
        due = self._started_at + self.sent_ms / 1000.0 - self.lead_s
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

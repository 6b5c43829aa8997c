"""Turn-taking of a voice session: VAD/STT events → Realtime events, barge-in, auto-responses.

Kept apart from the session's event handlers: this is the part that reacts to the user's voice
rather than to client events. Runs on the actor's task like the rest of the session.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from cozy_actors.observability.metrics import INTERRUPT_LATENCY
from cozy_media.stt.session import (
    TranscriptionError,
    UtteranceFinal,
    UtteranceLikely,
    UtterancePartial,
    UtteranceStarted,
    UtteranceStopped,
)

from .audio_in import AudioEvent, InputAudio
from .items import new_id

if TYPE_CHECKING:
    from .session import RealtimeSession

log = logging.getLogger("cozy.realtime")


class VoiceTurns:
    def __init__(self, session: RealtimeSession, speech: Any) -> None:
        self.s = session
        self.input = InputAudio(speech, session.config, session.tell)
        self._by_utterance: dict[int, str] = {}  # VAD mode: utterance -> user item id
        self._manual: deque[str] = deque()  # manual commits waiting for their transcript
        self._stable: dict[str, str] = {}  # item id -> transcript text already sent as deltas
        self._pending_finals = 0
        self._deferred: tuple[Any, ...] | None = None  # a response.create waiting for a transcript

    @property
    def awaiting_transcript(self) -> bool:
        return self._pending_finals > 0

    def configure(self) -> None:
        self.input.configure(self.s.config)

    async def feed(self, data: bytes) -> None:
        await self.input.feed(data)

    def commit(self) -> bool:
        """Client commit. VAD mode: ends the current utterance (events follow). Manual: the
        committed item is announced now and filled in when its transcript is ready."""
        if self.input.vad:
            return self.input.commit()
        if not self.input.commit():
            return False
        item_id = new_id()
        self.s.commit_audio_item(item_id)
        self._manual.append(item_id)
        self._pending_finals += 1
        return True

    def defer(self, start: Any) -> None:
        self._deferred = start

    def on_event(self, msg: AudioEvent) -> None:
        if msg.generation != self.input.generation:
            return  # from a pipeline replaced by session.update
        ev = msg.event
        if isinstance(ev, UtteranceStarted):
            self._started(ev)
        elif isinstance(ev, UtterancePartial):
            self._partial(ev)
        elif isinstance(ev, UtteranceStopped):
            if self.input.vad and ev.utterance in self._by_utterance:
                item_id = self._by_utterance[ev.utterance]
                self.s.emit(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": int(ev.audio_end_ms),
                        "item_id": item_id,
                    }
                )
                self.s.commit_audio_item(item_id)
                self._pending_finals += 1
        elif isinstance(ev, UtteranceFinal):
            self._final(ev.utterance, ev.transcript.text.strip(), ev.transcript.duration)
        elif isinstance(ev, UtteranceLikely):
            if self.input.vad and ev.utterance in self._by_utterance:
                self.s.prefetch_context(ev.text)
        elif isinstance(ev, TranscriptionError):
            item_id = self._item_for(ev.utterance, final=True)
            if item_id is not None:
                self._pending_finals = max(0, self._pending_finals - 1)
                self.s.emit(
                    {
                        "type": "conversation.item.input_audio_transcription.failed",
                        "item_id": item_id,
                        "content_index": 0,
                        "error": {"type": "transcription_error", "code": ev.code, "message": ev.message, "param": None},
                    }
                )

    def _started(self, ev: UtteranceStarted) -> None:
        detected = time.perf_counter()
        s = self.s
        if not self.input.vad:
            return
        item_id = new_id()
        self._by_utterance[ev.utterance] = item_id
        # The item will hold this utterance (with its prefix padding), not the silence before it.
        since_start_ms = max(0.0, self.input.position_ms - ev.audio_start_ms)
        s.audio.keep_last(int(since_start_ms * s.config.audio.input.format.bytes_per_ms()))
        s.emit(
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": int(ev.audio_start_ms), "item_id": item_id}
        )
        td = s.config.audio.input.turn_detection
        if s.response is not None and td is not None and td.interrupt_response:
            s.response.cancel("turn_detected")  # barge-in: no further audio delta leaves from here
            INTERRUPT_LATENCY.observe(time.perf_counter() - detected)

    def _partial(self, ev: UtterancePartial) -> None:
        item_id = self._by_utterance.get(ev.utterance) if self.input.vad else None
        if item_id is None:
            return
        sent = self._stable.get(item_id, "")
        stable = ev.partial.stable
        if len(stable) > len(sent) and stable.startswith(sent):
            self._stable[item_id] = stable
            self.s.emit(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": stable[len(sent) :],
                }
            )

    def _item_for(self, utterance: int, *, final: bool) -> str | None:
        if self.input.vad:
            return self._by_utterance.pop(utterance, None) if final else self._by_utterance.get(utterance)
        return self._manual.popleft() if (final and self._manual) else None

    def _final(self, utterance: int, text: str, seconds: float) -> None:
        s = self.s
        item_id = self._item_for(utterance, final=True)
        if item_id is None:
            return
        self._pending_finals = max(0, self._pending_finals - 1)
        item = s.items.get(item_id)
        if item is not None:
            item.set_transcript(text)
        sent = self._stable.pop(item_id, "")
        if text.startswith(sent) and len(text) > len(sent):
            s.emit(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": text[len(sent) :],
                }
            )
        s.emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": text,
                "usage": {"type": "duration", "seconds": round(seconds, 2)},
            }
        )
        if text:
            s.persist([{"role": "user", "content": text}])
        if self._deferred is not None and not self.awaiting_transcript:
            start, self._deferred = self._deferred, None
            start()
            return
        td = s.config.audio.input.turn_detection
        if self.input.vad and td is not None and td.create_response and text and s.response is None:
            s.start_response(s.config)

    async def close(self) -> None:
        await self.input.close()

"""Turn-taking of a voice session: VAD/STT events → Realtime events, barge-in, auto-responses.

Kept apart from the session's event handlers: this is the part that reacts to the user's voice
rather than to client events. Runs on the actor's task like the rest of the session.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from cozy_actors.observability.metrics import INTERRUPT_LATENCY, INTERRUPTIONS, TURN_STAGE, labelled
from cozy_media.stt.session import (
    TranscriptionError,
    UtteranceFinal,
    UtteranceLikely,
    UtterancePartial,
    UtteranceStarted,
    UtteranceStopped,
)

from .audio_in import AudioEvent, InputAudio
from .config import ServerVad
from .idle import IdleTimeout
from .interruption import PauseThenDecide
from .items import new_id

if TYPE_CHECKING:
    from .config import SessionConfig
    from .session import RealtimeSession

log = logging.getLogger("cozy.realtime")


class VoiceTurns:
    def __init__(self, session: RealtimeSession, speech: Any) -> None:
        self.s = session
        self.input = InputAudio(
            speech,
            session.config,
            session.tell,
            session.resolved.personality.voice.language,
            echo=bool(session.memo.get("echo_cancellation")),
        )
        self._by_utterance: dict[int, str] = {}  # VAD mode: utterance -> user item id
        self._manual: deque[str] = deque()  # manual commits waiting for their transcript
        self._stable: dict[str, str] = {}  # item id -> transcript text already sent as deltas
        self._pending_finals = 0
        self._deferred: tuple[Any, ...] | None = None  # a response.create waiting for a transcript
        self.idle = IdleTimeout()  # server_vad idle_timeout_ms
        self.barge = PauseThenDecide(session)  # speech over a reply: pause, then decide
        self._starts: dict[int, float] = {}  # utterance -> audio_start_ms (VAD mode)
        self._after_reply: list[str] = []  # user turns waiting for the reply they interrupted to end

    @property
    def awaiting_transcript(self) -> bool:
        return self._pending_finals > 0

    @property
    def transcribing(self) -> bool:
        """`transcription: null`: the words still reach the model, but no transcription events."""
        return self.s.config.audio.input.transcription is not None

    def configure(self, config: SessionConfig | None = None) -> None:
        """Rebuild the input pipeline for `config` (the session's by default); raises, changing
        nothing, when an engine it needs is missing."""
        generation = self.input.generation
        self.input.configure(config or self.s.config)
        if self.input.generation != generation:
            self._reset()

    def clear(self) -> None:
        """input_audio_buffer.clear: the STT stream is rebuilt, so the cleared audio is never heard."""
        self.input.restart(self.s.config)
        self._reset()

    def _reset(self) -> None:
        """A new pipeline (its clock starts at 0): the old one's utterances will never be
        transcribed. Their items are told so, and a response.create waiting for them starts now
        instead of never."""
        self.idle = IdleTimeout()
        self.barge.reset()
        self._starts.clear()
        for item_id in self._manual:
            self._failed(item_id, "transcription_cancelled", "the input pipeline was rebuilt before transcription")
        self._by_utterance.clear()
        self._manual.clear()
        self._stable.clear()
        self._pending_finals = 0
        if self._deferred is not None:
            start, self._deferred = self._deferred, None
            start()

    def _failed(self, item_id: str, code: str, message: str) -> None:
        if self.transcribing:
            self.s.emit(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": item_id,
                    "content_index": 0,
                    "error": {"type": "transcription_error", "code": code, "message": message, "param": None},
                }
            )

    def feed(self, data: bytes) -> Awaitable[None]:
        td = self.s.config.audio.input.turn_detection
        if isinstance(td, ServerVad) and td.idle_timeout_ms is not None:
            return self._feed_timed(data)
        return self.input.feed(data)  # the awaitable itself: one coroutine less per frame

    async def _feed_timed(self, data: bytes) -> None:
        await self.input.feed(data)
        self.idle.check(self.s, self.input.position_ms, self.awaiting_transcript or self.input.speaking)

    def response_finished(self, playing_ms: float) -> None:
        """The idle timeout counts from the end of the response's playback (`playing_ms` from now)."""
        if not self.idle.speaking:
            self.idle.arm(self.input.position_ms + playing_ms)

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
            self.idle.speech_stopped(ev.audio_end_ms)
            self.barge.stopped(ev.utterance, ev.audio_end_ms)
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
            labelled(TURN_STAGE, "stt_final").observe(ev.latency_ms / 1000.0)  # end of speech -> final ready
            text = ev.transcript.text.strip()
            start_ms = self._starts.pop(ev.utterance, ev.audio_start_ms)
            turn = self.barge.final(ev.utterance, text, start_ms, ev.audio_end_ms)
            self._final(ev.utterance, text, ev.transcript.duration, turn=turn)
        elif isinstance(ev, UtteranceLikely):
            if self.input.vad and ev.utterance in self._by_utterance:
                self.s.prefetch_context(ev.text)
                self.s.preempt(ev.text)
        elif isinstance(ev, TranscriptionError):
            self._starts.pop(ev.utterance, None)
            self.barge.final(ev.utterance, "", 0.0, 0.0)  # no words will come: a paused reply goes on
            item_id = self._item_for(ev.utterance, final=True)
            if item_id is not None:
                self._pending_finals = max(0, self._pending_finals - 1)
                self._failed(item_id, ev.code, ev.message)

    def _started(self, ev: UtteranceStarted) -> None:
        detected = time.perf_counter()
        s = self.s
        s.preemption.drop()  # a new utterance: the last pause's words are not the turn's end
        if not self.input.vad:
            return
        self.idle.speech_started()
        item_id = new_id()
        self._by_utterance[ev.utterance] = item_id
        # The item will hold this utterance (with its prefix padding), not the silence before it.
        since_start_ms = max(0.0, self.input.position_ms - ev.audio_start_ms)
        s.audio.keep_last(int(since_start_ms * s.config.audio.input.format.bytes_per_ms()))
        s.emit(
            {"type": "input_audio_buffer.speech_started", "audio_start_ms": int(ev.audio_start_ms), "item_id": item_id}
        )
        heard_from = ev.detected_ms if ev.detected_ms is not None else ev.audio_start_ms  # speech, not padding
        self._starts[ev.utterance] = heard_from
        td = s.config.audio.input.turn_detection
        if s.response is not None and td is not None and td.interrupt_response:
            # barge-in: no further audio delta leaves from here (paused, or cancelled as before)
            if not self.barge.barge_in(ev.utterance, heard_from):
                s.response.cancel("turn_detected")
                INTERRUPTIONS.labels(mode="cancel").inc()
            INTERRUPT_LATENCY.observe(time.perf_counter() - detected)

    def _partial(self, ev: UtterancePartial) -> None:
        item_id = self._by_utterance.get(ev.utterance) if self.input.vad else None
        if item_id is None:
            return
        sent = self._stable.get(item_id, "")
        stable = ev.partial.stable
        self.barge.partial(ev.utterance, stable, ev.partial.text)
        if self.transcribing and len(stable) > len(sent) and stable.startswith(sent):
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

    def _final(self, utterance: int, text: str, seconds: float, *, turn: bool = True) -> None:
        s = self.s
        item_id = self._item_for(utterance, final=True)
        if item_id is None:
            return
        self._pending_finals = max(0, self._pending_finals - 1)
        item = s.items.get(item_id)
        if item is not None:
            item.set_transcript(text)
        sent = self._stable.pop(item_id, "")
        if self.transcribing and text.startswith(sent) and len(text) > len(sent):
            s.emit(
                {
                    "type": "conversation.item.input_audio_transcription.delta",
                    "item_id": item_id,
                    "content_index": 0,
                    "delta": text[len(sent) :],
                }
            )
        if self.transcribing:
            s.emit(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": text,
                    "usage": {"type": "duration", "seconds": round(seconds, 2)},
                }
            )
        if not turn:  # a false interruption (noise, backchannel): not a user turn, not stored
            s.drop_item(item_id)
        elif s.response is not None and s.response.cancel_reason == "turn_detected":
            self._after_reply.append(text)  # stored and answered after the cut reply is stored
            return
        if turn:
            self._user_turn(text)
        elif self._deferred is not None and not self.awaiting_transcript:
            start, self._deferred = self._deferred, None
            start()

    def _user_turn(self, text: str) -> None:
        s = self.s
        if text:
            s.persist([{"role": "user", "content": text}])
        if self._deferred is not None and not self.awaiting_transcript:
            start, self._deferred = self._deferred, None
            start()
            return
        td = s.config.audio.input.turn_detection
        if self.input.vad and td is not None and td.create_response and text and s.response is None:
            s.start_response(s.config)

    def after_reply(self) -> None:
        """The in-band reply has ended (and is stored): a user turn that interrupted it goes on."""
        waiting, self._after_reply = self._after_reply, []
        for text in waiting:
            self._user_turn(text)

    async def close(self) -> None:
        await self.input.close()

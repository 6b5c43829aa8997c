"""server_vad `idle_timeout_ms`: when the user stays silent that long, the server prompts.

GA behaviour: the clock starts when the last response finished (or at the session's start, or
at the last end of speech); if no speech starts within the timeout, the server sends
`input_audio_buffer.timeout_triggered` {audio_start_ms, audio_end_ms, item_id}, commits the
silent audio as a user item and creates a response. Time is the input audio's clock (the ms the
client has streamed), the clock every other VAD event is on, so the check is one comparison per
frame and no timer task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ServerVad
from .items import new_id

if TYPE_CHECKING:
    from .session import RealtimeSession


class IdleTimeout:
    def __init__(self) -> None:
        self.since_ms: float | None = 0.0  # where the silence being timed began; None: not timing
        self.speaking = False

    def arm(self, at_ms: float) -> None:
        self.since_ms = at_ms

    def speech_started(self) -> None:
        self.speaking = True
        self.since_ms = None

    def speech_stopped(self, at_ms: float) -> None:
        self.speaking = False
        self.since_ms = at_ms

    def check(self, s: RealtimeSession, now_ms: float, busy: bool) -> bool:
        """Fire when due (per frame: cheap unless a timeout is configured); True when it fired.
        `busy`: the VAD hears speech, or a transcript is still coming."""
        td = s.config.audio.input.turn_detection
        if not isinstance(td, ServerVad) or td.idle_timeout_ms is None or self.since_ms is None:
            return False
        if self.speaking or busy or s.response is not None:
            return False
        if now_ms - self.since_ms < td.idle_timeout_ms:
            return False
        start, self.since_ms = self.since_ms, None  # timed again when the response has finished
        item_id = new_id()
        s.emit(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": int(start),
                "audio_end_ms": int(now_ms),
                "item_id": item_id,
            }
        )
        s.audio.keep_last(int((now_ms - start) * s.config.audio.input.format.bytes_per_ms()))  # the silent segment
        s.commit_audio_item(item_id)
        s.start_response(s.config)
        return True

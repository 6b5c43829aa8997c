"""One WebRTC call's glue to its Realtime actor: microphone PCM in, reply audio out, barge-in, end.

Why an object apart from the fastrtc handler: the offer route opens the actor before fastrtc builds
the call's handler (so an unknown personality or a full server is an HTTP error, not a dead call),
so something must hold the actor and its not-yet-played audio until the handler attaches. It needs
nothing from fastrtc, so it is tested without it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import orjson

from cozy_actors.realtime.actor import AppendAudio, ClientEvent
from cozy_actors.runtime import ActorRef, ActorStopped, MailboxFull, StopReason
from cozy_media.audio.resample import Resampler

from .conversation import WATCHED, Conversation

log = logging.getLogger("cozy.webrtc")

SESSION_RATE = 24000  # the session's input and output format: audio/pcm 24 kHz
MAX_QUEUED_CHUNKS = 600  # reply audio waiting for fastrtc (100 ms deltas: 60 s); pacing keeps it near 3
CLOSE = object()  # in `out`: the call is over (the handler says so on the data channel)
SHOW_EVERY_S = 0.1  # the page's conversation view is refreshed at most this often (bursts coalesce)


class Peer(Protocol):
    """What the bridge needs from the fastrtc handler it feeds."""

    def clear_output(self) -> None: ...
    def post(self, message: dict[str, Any]) -> None: ...
    def side_output(self, html: str) -> Any:
        """Wrap the conversation view for `out` (fastrtc's AdditionalOutputs: the page shows it)."""
        ...


class CallBridge:
    """Owns the call's actor from `bind` to `close`; `out` holds (rate, int16 (1, N)) reply chunks."""

    def __init__(
        self, webrtc_id: str, *, input_rate: int = SESSION_RATE, on_closed: Callable[[CallBridge], None] | None = None
    ) -> None:
        self.webrtc_id = webrtc_id
        self.ref: ActorRef | None = None
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self.peer: Peer | None = None
        self.closed = False
        self.reason: str | None = None
        self.user_frames = 0
        self.input_samples = 0  # 24 kHz samples sent to the session: the VAD's clock, for latencies
        self.conversation: Conversation | None = None  # /ui page calls: the live view of the call
        self._show_pending = False
        self._resampler = Resampler(input_rate, SESSION_RATE)
        self._on_closed = on_closed
        self._dropped = 0
        self._replying = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle ----------------------------------------------------------------------------
    def bind(self, ref: ActorRef, session: dict[str, Any] | None) -> None:
        """Take over the call's actor: configure its session (None: it was opened with its config),
        end the call when it stops."""
        self.ref = ref
        if session is not None:
            ref.tell(ClientEvent({"type": "session.update", "session": session}))
        self._spawn(self._watch(ref))

    def attach(self, peer: Peer, *, show_conversation: bool = False) -> None:
        """The fastrtc handler of this call is up: audio can flow to it. `show_conversation`: the
        /ui page's calls, whose page displays the conversation (side data between audio chunks)."""
        self.peer = peer
        if show_conversation:
            self.conversation = Conversation()
            self._schedule_show()  # the page drops the previous call's conversation now

    def expire_unless_attached(self, timeout_s: float) -> None:
        """Release the actor if no peer ever attaches (the peer never connected or sent no audio track)."""

        async def deadline() -> None:
            await asyncio.sleep(timeout_s)
            if self.peer is None and not self.closed:
                await self.close("the peer never connected")

        self._spawn(deadline())

    async def close(self, reason: str) -> None:
        """End the call: stop the actor (idempotent), tell the handler to close the stream."""
        if self.closed:
            return
        self.closed, self.reason = True, reason
        self.out.put_nowait(CLOSE)
        if self.ref is not None:
            with contextlib.suppress(Exception):
                await self.ref.stop(StopReason.NORMAL, reason)
        if self._on_closed is not None:
            self._on_closed(self)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()

    async def _watch(self, ref: ActorRef) -> None:
        reason, detail = await ref.wait_stopped()
        if not self.closed:
            log.info("webrtc call %s: session ended (%s)", self.webrtc_id, detail or reason.value)
            await self.close(detail or reason.value)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"webrtc-call:{self.webrtc_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- microphone -> actor ------------------------------------------------------------------
    def feed(self, samples: np.ndarray) -> None:
        """One WebRTC frame (int16, (1, N) or (N,), at the input rate) into the session, as PCM16 24 kHz."""
        if self.ref is None or self.closed:
            return
        pcm = self._resampler.process(samples.reshape(-1))
        if not len(pcm):
            return
        try:
            self.ref.tell(AppendAudio(pcm.astype("<i2", copy=False).tobytes()))
            self.user_frames += 1
            self.input_samples += len(pcm)
        except MailboxFull:
            self._dropped += 1
            if self._dropped in (1, 100, 10_000):
                log.warning(
                    "webrtc call %s: session mailbox full, %d input frames dropped", self.webrtc_id, self._dropped
                )
        except ActorStopped:
            pass  # _watch closes the call

    # --- actor -> speaker ---------------------------------------------------------------------
    def on_event(self, event: dict[str, Any]) -> None:
        """The actor's `emit`: reply audio to `out`; barge-in drops what is queued; a few events
        go to the peer's data channel (fastrtc's log/warning/error messages)."""
        etype = event.get("type")
        if etype == "response.output_audio.delta":
            self._audio(event.get("delta"))
            return
        if etype == "input_audio_buffer.speech_started":
            self.flush()  # the caller talks: nothing already queued may still play
            self._send({"type": "log", "data": "started_talking"})
        elif etype == "input_audio_buffer.speech_stopped":
            self._send({"type": "log", "data": "pause_detected"})
        elif etype == "response.created":
            self._replying = False
        elif etype == "response.done":
            if (event.get("response") or {}).get("status") == "cancelled":
                self.flush()
        elif etype == "conversation.item.input_audio_transcription.completed":
            self._send({"type": "log", "data": {"role": "user", "transcript": event.get("transcript", "")}})
        elif etype == "response.output_audio_transcript.done":
            self._send({"type": "log", "data": {"role": "assistant", "transcript": event.get("transcript", "")}})
        elif etype == "error":
            err = event.get("error") or {}
            self._send({"type": "warning", "message": err.get("message") or err.get("code") or "error"})
        if self.conversation is not None and etype in WATCHED:
            if self.conversation.apply(event, self.input_samples / (SESSION_RATE / 1000)):
                self._schedule_show()

    def _audio(self, delta: Any) -> None:
        if self.closed or not isinstance(delta, str):
            return
        try:
            pcm = np.frombuffer(base64.b64decode(delta), dtype="<i2")
        except (binascii.Error, ValueError):
            return
        if not self._replying:
            self._replying = True
            self._send({"type": "log", "data": "response_starting"})
            if self.conversation is not None and self.conversation.first_audio():
                self._schedule_show()
        if self.out.qsize() >= MAX_QUEUED_CHUNKS:
            with contextlib.suppress(asyncio.QueueEmpty):
                self.out.get_nowait()  # bounded: the oldest chunk goes
        self.out.put_nowait((SESSION_RATE, pcm.reshape(1, -1)))

    def flush(self) -> None:
        """Drop reply audio not yet handed to fastrtc, and fastrtc's own not-yet-sent frames."""
        while True:
            try:
                item = self.out.get_nowait()
            except asyncio.QueueEmpty:
                break
            if item is CLOSE:
                self.out.put_nowait(CLOSE)
                break
        if self.peer is not None:
            self.peer.clear_output()
        if self.conversation is not None:
            self._schedule_show()  # a view waiting in `out` may have gone with the audio

    # --- the page's conversation view ---------------------------------------------------------
    def _schedule_show(self) -> None:
        if not self._show_pending and not self.closed:
            self._show_pending = True
            asyncio.get_running_loop().call_later(SHOW_EVERY_S, self._show)

    def _show(self) -> None:
        """The view goes into `out` with the audio: fastrtc's emit loop hands it to the page."""
        self._show_pending = False
        if self.conversation is not None and self.peer is not None and not self.closed:
            self.out.put_nowait(self.peer.side_output(self.conversation.html()))

    def _send(self, message: dict[str, Any]) -> None:
        if self.peer is not None and not self.closed:
            self.peer.post(message)


def encode_message(message: dict[str, Any]) -> str:
    """A data-channel message as fastrtc's frontend reads it."""
    return orjson.dumps(message).decode()

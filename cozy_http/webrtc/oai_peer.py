"""One OpenAI-style WebRTC call: an aiortc peer connection whose Opus track carries the caller's
voice in and the reply out, and whose `oai-events` data channel carries the same JSON client and
server events as `WS /v1/realtime`.

The call's actor, its queued reply audio and barge-in are the FastRTC path's `CallBridge`; this
module is only the other signalling and wire: aiortc directly (no fastrtc Stream, whose offer body
and data-channel messages are its own). Over WebRTC the server owns playback, so it tells the
client when reply audio starts and stops playing (`output_audio_buffer.started|stopped|cleared`),
and audio deltas stay off the data channel (the track carries them). Imports aiortc: loaded lazily.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import itertools
import logging
import time
import uuid
from typing import Any

import av
import numpy as np
import orjson
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from cozy_actors.realtime.actor import CONTROL_EVENTS, ClientEvent
from cozy_actors.realtime.fanout import EventFanout
from cozy_actors.realtime.items import error_event
from cozy_actors.runtime import MailboxClosed, MailboxFull

from .bridge import CLOSE, SESSION_RATE, CallBridge
from .gateway import low_latency_input
from .oai_calls import pinned_format

log = logging.getLogger("cozy.webrtc")

CHANNEL = "oai-events"
FRAME = SESSION_RATE // 50  # 20 ms of reply audio per RTP packet
MAX_EARLY_EVENTS = 1000  # server events waiting for the data channel to open (session.created first)
_TIME_BASE = fractions.Fraction(1, SESSION_RATE)
_AUDIO_DELTA = "response.output_audio.delta"


def ice_configuration(servers: list[dict[str, Any]]) -> RTCConfiguration:
    """`api.webrtc.ice_servers` as aiortc wants them (empty by default: no public STUN)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential")) for s in servers
        ]
    )


class ReplyTrack(MediaStreamTrack):
    """The server's audio track: 20 ms frames at real-time pace from the bridge's queue, silence
    between replies. It knows what is playing, so it says when a reply starts and stops."""

    kind = "audio"

    def __init__(self, call: OpenAICall) -> None:
        super().__init__()
        self.call = call
        self.pending = np.zeros(0, dtype=np.int16)
        self.playing: str | None = None  # the response whose audio is on the wire now
        self._silence = np.zeros((1, FRAME), dtype=np.int16)
        self._start: float | None = None
        self._sent = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            wait = self._start + self._sent / SESSION_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        samples = self._take()
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = SESSION_RATE, self._sent, _TIME_BASE
        self._sent += FRAME
        return frame

    def _take(self) -> np.ndarray:
        out = self.call.bridge.out
        while len(self.pending) < FRAME and not out.empty():
            item = out.get_nowait()
            if item is CLOSE:
                self.stop()
                break
            chunk = item[1].reshape(-1)
            self.pending = np.concatenate((self.pending, chunk)) if len(self.pending) else chunk
        if not len(self.pending):
            if self.playing is not None and self.call.audio_done == self.playing:
                self.call.playback("output_audio_buffer.stopped", self.playing)
                self.playing = None
            return self._silence
        if self.playing is None:
            self.playing = self.call.response_id
            self.call.playback("output_audio_buffer.started", self.playing)
        chunk, self.pending = self.pending[:FRAME], self.pending[FRAME:]
        if len(chunk) < FRAME:
            chunk = np.concatenate((chunk, np.zeros(FRAME - len(chunk), dtype=np.int16)))
        return chunk.reshape(1, -1)

    def drop(self) -> str | None:
        """Barge-in or a clear: nothing already queued plays; returns the response that was playing."""
        playing, self.playing = self.playing, None
        self.pending = self.pending[:0]
        return playing


class OpenAICall:
    """Owns the peer connection; the bridge owns the actor. `emit` (an EventFanout) is what the
    actor was opened with: sideband WebSockets subscribe to it."""

    def __init__(
        self,
        call_id: str,
        bridge: CallBridge,
        *,
        ice_servers: list[dict[str, Any]],
        max_message: int,
        max_outbox: int,
    ) -> None:
        self.call_id = call_id
        self.bridge = bridge
        self.emit = EventFanout(self._on_event)
        self.max_message = max_message
        self.max_outbox = max_outbox  # bytes of events the data channel may hold unsent
        self.user_id: str | None = None
        self.pc = RTCPeerConnection(ice_configuration(ice_servers))
        self.track = ReplyTrack(self)
        self.channel: Any = None
        self.response_id: str | None = None  # the response being generated
        self.audio_done: str | None = None  # the latest response whose audio is all generated
        self._early: list[str] = []
        self._ids = itertools.count(1)
        self._prefix = f"evt_{uuid.uuid4().hex[:12]}_"
        self._tasks: set[asyncio.Task[Any]] = set()
        self.pc.addTrack(self.track)
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_channel)
        self.pc.on("connectionstatechange", self._on_state)

    async def take_offer(self, sdp: str) -> None:
        """Apply the caller's offer (a bad one raises before any session is opened)."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        low_latency_input(self.pc)

    async def answer(self) -> str:
        """The SDP answer, with every ICE candidate gathered (no trickling in OpenAI's flow)."""
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def close(self) -> None:
        """The call is over (the bridge has ended it): the peer connection goes, after its last events."""
        await asyncio.sleep(0.3)  # the final events (e.g. session_expired) leave on the channel first
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()

    def limit(self, seconds: float) -> None:
        """`webrtc.time_limit_s`: the call ends after this long, as a FastRTC call does."""

        async def deadline() -> None:
            await asyncio.sleep(seconds)
            await self.bridge.close("time limit reached")

        self._spawn(deadline())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"oai-call:{self.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- peer connection -------------------------------------------------------------------------
    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.bridge.attach(self)
        elif state in ("failed", "closed"):
            self._spawn(self.bridge.close("peer connection closed"))

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._microphone(track))

    async def _microphone(self, track: MediaStreamTrack) -> None:
        """The caller's Opus frames, decoded by aiortc, as PCM16 24 kHz mono into the session."""
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SESSION_RATE)
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                for out in resampler.resample(frame):
                    self.bridge.feed(out.to_ndarray())

    def _on_channel(self, channel: Any) -> None:
        if channel.label != CHANNEL:
            return
        self.channel = channel
        channel.on("message", self._on_message)
        early, self._early = self._early, []
        for text in early:
            channel.send(text)

    # --- data channel: client events in ---------------------------------------------------------
    def _on_message(self, raw: Any) -> None:
        ref = self.bridge.ref
        if ref is None or self.bridge.closed:
            return
        if not isinstance(raw, str):
            self.emit(error_event("Binary messages are not part of the protocol; send JSON text.", "invalid_event"))
            return
        if len(raw) > self.max_message:
            self.emit(error_event(f"message too big (limit {self.max_message} bytes)", "message_too_big"))
            return
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            self.emit(error_event(f"Invalid JSON: {exc}", "invalid_json"))
            return
        etype = event.get("type") if isinstance(event, dict) else None
        if refusal := pinned_format(event):
            self.emit(error_event(refusal[0], "invalid_value", event.get("event_id"), refusal[1]))
            return
        try:
            ref.tell(ClientEvent(event), control=isinstance(etype, str) and etype in CONTROL_EVENTS, nbytes=len(raw))
        except MailboxFull:
            self.emit(error_event("Too many events queued; slow down.", "rate_limit_exceeded", event.get("event_id")))
        except MailboxClosed:
            pass

    # --- server events out --------------------------------------------------------------------
    def _on_event(self, event: dict[str, Any]) -> None:
        etype = event.get("type")
        if etype == "response.created":
            self.response_id = (event.get("response") or {}).get("id")
        elif etype in ("response.output_audio.done", "response.done"):
            self.audio_done = event.get("response_id") or (event.get("response") or {}).get("id")
        if etype != _AUDIO_DELTA and not str(etype).startswith("cozy."):  # OpenAI's channel: GA events only
            self._send(event)  # first: a barge-in's `cleared` follows the speech_started that caused it
        self.bridge.on_event(event)  # reply audio to the track's queue; barge-in flushes it
        if etype == "output_audio_buffer.cleared":
            self.track.drop()  # the client asked (output_audio_buffer.clear); the session answered
            self.bridge.flush()

    def playback(self, etype: str, response_id: str | None) -> None:
        """The track's news (started/stopped playing), to the channel and every sideband."""
        self.emit({"type": etype, "response_id": response_id})

    def _send(self, event: dict[str, Any]) -> None:
        event["event_id"] = f"{self._prefix}{next(self._ids)}"
        text = orjson.dumps(event).decode()
        channel = self.channel
        if channel is None:
            if len(self._early) < MAX_EARLY_EVENTS:
                self._early.append(text)
        elif channel.readyState == "open":
            if channel.bufferedAmount > self.max_outbox:
                if not self.bridge.closed:  # a client that does not read its events is let go, as on the WebSocket
                    self._spawn(self.bridge.close("client is not reading its events"))
                return
            channel.send(text)

    # --- Peer (what the bridge calls) -----------------------------------------------------------
    def clear_output(self) -> None:
        """Barge-in or a cancelled reply: queued audio is gone; the client hears that it stopped."""
        playing = self.track.drop()
        if playing is not None:
            self.emit({"type": "output_audio_buffer.cleared", "response_id": playing})

    def post(self, message: dict[str, Any]) -> None:
        """fastrtc-style status messages: not part of OpenAI's channel (it carries the events)."""

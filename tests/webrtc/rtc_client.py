"""An aiortc WebRTC client for CozyEngine's FastRTC endpoint: a paced "microphone" track that plays
PCM when told to (silence otherwise), the "text" data channel, and a speaker that timestamps every
received frame, so tests can measure end of speech -> first reply audio and barge-in."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
import uuid
from typing import Any

import httpx
import numpy as np
import orjson
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

RATE = 48000
FRAME = 960  # 20 ms
SPEECH_LEVEL = 300  # int16 absolute amplitude counted as speech in a sent clip
HEARD_RMS = 200.0  # received frame RMS counted as reply audio (silence decodes near 0)


def to_48k(pcm24: bytes) -> np.ndarray:
    """PCM16 24 kHz (the TTS endpoint's `pcm`) -> int16 48 kHz."""
    import soxr

    samples = np.frombuffer(pcm24, dtype="<i2").astype(np.float32)
    return np.clip(soxr.resample(samples, 24000, RATE), -32768, 32767).astype(np.int16)


class Microphone(MediaStreamTrack):
    """20 ms frames at real-time pace; `say(pcm)` queues speech, otherwise silence."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pending = np.zeros(0, dtype=np.int16)
        self._start: float | None = None
        self._sent = 0
        self.speech_started_at: float | None = None  # wall time the first loud sample of the clip left
        self.speech_ended_at: float | None = None  # wall time the last loud sample of the clip left
        self._loud_left = 0  # samples until the clip's last loud sample
        self._lead_left = -1  # samples until the clip's first loud sample
        self.done = asyncio.Event()
        self.echo_gain = 0.0  # a speakerphone: the speaker's output comes back at this gain (see `hear`)
        self._echo = np.zeros(0, dtype=np.float32)

    def hear(self, played: np.ndarray) -> None:
        """Speaker output (48 kHz mono), fed back into this microphone after what is queued."""
        self._echo = np.concatenate([self._echo, played.astype(np.float32) * self.echo_gain])

    def say(self, pcm48: np.ndarray) -> None:
        loud = np.flatnonzero(np.abs(pcm48.astype(np.int32)) > SPEECH_LEVEL)
        self._pending = pcm48.astype(np.int16)
        self._lead_left = int(loud[0]) if len(loud) else -1
        self._loud_left = int(loud[-1]) + 1 if len(loud) else 0
        self.speech_started_at = self.speech_ended_at = None
        self.done.clear()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            wait = self._start + self._sent / RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        chunk, self._pending = self._pending[:FRAME], self._pending[FRAME:]
        now = time.time()
        if len(chunk):
            if 0 <= self._lead_left < FRAME:
                self.speech_started_at = now + self._lead_left / RATE
            if self._lead_left >= 0:
                self._lead_left -= FRAME
            if 0 < self._loud_left <= FRAME:
                self.speech_ended_at = now + self._loud_left / RATE
            self._loud_left -= FRAME
            if not len(self._pending):
                self.done.set()
        samples = np.zeros(FRAME, dtype=np.int16)
        samples[: len(chunk)] = chunk
        if self.echo_gain:
            echo, self._echo = self._echo[:FRAME], self._echo[FRAME:]
            mixed = samples.astype(np.float32)
            mixed[: len(echo)] += echo
            samples = np.clip(mixed, -32768, 32767).astype(np.int16)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sent
        frame.time_base = fractions.Fraction(1, RATE)
        self._sent += FRAME
        return frame


class Speaker:
    """Reads the server's audio track; `loud` holds the wall time of every frame with reply audio."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, float]] = []  # (wall time, rms)
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.listener: Any = None  # called with each frame's samples (48 kHz mono int16)

    def start(self, track: MediaStreamTrack) -> None:
        self.task = asyncio.create_task(self._run(track))

    async def _run(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                data = frame.to_ndarray().astype(np.float32)
                if self.listener is not None:
                    self.listener(data.reshape(-1, len(frame.layout.channels))[:, 0])
                self.frames.append((time.time(), float(np.sqrt(np.mean(data * data)))))
                self.changed.set()

    def loud(self, after: float = 0.0) -> list[float]:
        return [t for t, rms in self.frames if rms > HEARD_RMS and t > after]

    async def wait_loud(self, after: float, timeout: float) -> float:
        """Wall time of the first reply-audio frame received after `after`."""
        async with asyncio.timeout(timeout):
            while True:
                heard = self.loud(after)
                if heard:
                    return heard[0]
                self.changed.clear()
                await self.changed.wait()

    async def wait_quiet(self, after: float, quiet_s: float, timeout: float) -> float:
        """Wall time of the last reply-audio frame after `after`, once none came for `quiet_s`."""
        async with asyncio.timeout(timeout):
            while True:
                heard = self.loud(after)
                last = heard[-1] if heard else after
                if time.time() - last >= quiet_s:
                    return last
                await asyncio.sleep(0.02)


class Call:
    """One WebRTC call to `POST {root}{path}/webrtc/offer`."""

    def __init__(
        self, root: str, key: str | None, path: str = "/v1/rtc", *, echo_db: float | None = None, **query: str
    ) -> None:
        self.url = f"{root}{path}/webrtc/offer"
        self.headers = {"authorization": f"Bearer {key}"} if key else {}
        self.query = query
        self.webrtc_id = uuid.uuid4().hex[:16]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # host candidates only, no STUN
        self.mic = Microphone()
        self.speaker = Speaker()
        if echo_db is not None:  # a speakerphone: the reply comes back into the microphone, 60 ms late
            self.mic.echo_gain = 10 ** (echo_db / 20)
            self.mic.hear(np.zeros(int(0.060 * RATE), dtype=np.int16))
            self.speaker.listener = self.mic.hear
        self.messages: list[Any] = []
        self.channel = self.pc.createDataChannel("text")
        self.message_times: list[float] = []
        self.channel.on("message", self._on_message)
        self.pc.addTrack(self.mic)
        self.pc.on("track", lambda track: self.speaker.start(track) if track.kind == "audio" else None)

    def _on_message(self, raw: str) -> None:
        self.message_times.append(time.time())
        self.messages.append(orjson.loads(raw))

    def message_time(self, data: Any, after: float = 0.0) -> float | None:
        """Wall time the first data-channel message with this `data` arrived after `after`."""
        for t, m in zip(self.message_times, self.messages, strict=True):
            if t > after and isinstance(m, dict) and m.get("data") == data:
                return t
        return None

    async def offer(self) -> httpx.Response:
        """Send the offer; on an answer, apply it. Returns the HTTP response either way."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer", "webrtc_id": self.webrtc_id}
        async with httpx.AsyncClient(timeout=60) as http:
            response = await http.post(self.url, params=self.query, json=body, headers=self.headers)
        data = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code == 200 and data.get("type") == "answer":
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="answer"))
        return response

    async def connected(self, timeout: float = 15) -> None:
        """Connected on both ends: the data channel opens only once the server's DTLS/SCTP is up too,
        so a call closed right after this is seen closing by the server (not by a 30 s timeout)."""
        state = asyncio.Event()
        self.pc.on("connectionstatechange", state.set)
        self.channel.on("open", state.set)
        async with asyncio.timeout(timeout):
            while self.pc.connectionState != "connected" or self.channel.readyState != "open":
                state.clear()
                await state.wait()

    def logs(self, kind: str = "log") -> list[Any]:
        """Data-channel messages of one type: fastrtc puts logs in `data`, warnings/errors in `message`."""
        return [m.get("data", m.get("message")) for m in self.messages if isinstance(m, dict) and m.get("type") == kind]

    async def close(self) -> None:
        await self.pc.close()
        if self.speaker.task is not None:
            self.speaker.task.cancel()
            with contextlib.suppress(BaseException):
                await self.speaker.task

"""`WS /v1/audio/stt/stream`: live transcription with partials.

Client → server: binary audio frames (PCM16 little-endian mono, 16 kHz unless configured), and
optional JSON text messages: a first `{"type": "config", "format": "pcm16"|"pcmu"|"pcma",
"sample_rate": 8000-48000, "language": "en", "prompt": "...", "vad": {threshold,
prefix_padding_ms, silence_duration_ms} | null}` (`vad: null` = one utterance per `commit`),
`{"type": "commit"}` (end the current utterance now) and `{"type": "end"}` (finish: the last
finals arrive, then `done`, then the server closes).

Server → client: `speech_started`, `transcript` (`is_partial: true`; `text` only grows, `unstable`
is the tentative rest), `speech_stopped`, `transcript_final` (`is_partial: false`, `language`,
`duration`, `confidence`, `latency_ms`), `error` (`code`, `message`; the connection stays open
for bad messages), `done`. Every transcript event carries `utterance_id`.

Limits (`api.stt_stream`, rules in cozy_actors.stt_streams): a stream is admitted like a voice
session (else `error` RESOURCE_EXHAUSTED, close 1013); a message over `max_message_bytes` closes
with 1009; after `max_duration_s`, or when its key is revoked or its user disabled, the client gets
an `error` (`session_expired` / `session_revoked`) and the socket closes (1000 / 1008).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import numpy as np
import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from cozy_actors.quotas import QuotaExceeded
from cozy_actors.stt_streams import StreamEnd
from cozy_core.errors import CozyError
from cozy_media.audio.g711 import alaw_decode, ulaw_decode
from cozy_media.audio.resample import Resampler
from cozy_media.stt.session import (
    TranscriptionError,
    TranscriptionSession,
    UtteranceFinal,
    UtterancePartial,
    UtteranceStarted,
    UtteranceStopped,
)
from cozy_media.vad.stream import VadParams

log = logging.getLogger("cozy.http.stt")
_FORMATS = {
    "pcm16": "pcm16",
    "pcm": "pcm16",
    "s16le": "pcm16",
    "audio/pcm": "pcm16",
    "pcmu": "pcmu",
    "ulaw": "pcmu",
    "g711_ulaw": "pcmu",
    "audio/pcmu": "pcmu",
    "pcma": "pcma",
    "alaw": "pcma",
    "g711_alaw": "pcma",
    "audio/pcma": "pcma",
}


class _Config:
    def __init__(self, msg: dict[str, Any], default_vad: VadParams) -> None:
        fmt = str(msg.get("format", "pcm16")).lower()
        if fmt not in _FORMATS:
            raise CozyError(
                f"unsupported format {fmt!r} (pcm16, pcmu, pcma)",
                code="VALIDATION_AUDIO_FORMAT",
                status=400,
                param="format",
            )
        self.format = _FORMATS[fmt]
        default_rate = 8000 if self.format != "pcm16" else 16000
        rate = msg.get("sample_rate", msg.get("rate", default_rate))
        if not isinstance(rate, int) or not 8000 <= rate <= 48000:
            raise CozyError(
                "sample_rate must be an integer from 8000 to 48000",
                code="VALIDATION_ERROR",
                status=400,
                param="sample_rate",
            )
        self.sample_rate = rate
        self.language = msg.get("language") or None
        self.prompt = msg.get("prompt") or None
        vad = msg.get("vad", {})
        self.use_vad = vad is not None and vad is not False
        self.vad = default_vad
        if isinstance(vad, dict) and vad:
            try:
                self.vad = VadParams(
                    threshold=float(vad.get("threshold", default_vad.threshold)),
                    prefix_padding_ms=int(vad.get("prefix_padding_ms", default_vad.prefix_padding_ms)),
                    silence_duration_ms=int(vad.get("silence_duration_ms", default_vad.silence_duration_ms)),
                )
            except (TypeError, ValueError):
                raise CozyError(
                    "vad fields must be numbers", code="VALIDATION_ERROR", status=400, param="vad"
                ) from None
            if not 0 < self.vad.threshold < 1:
                raise CozyError(
                    "vad.threshold must be between 0 and 1", code="VALIDATION_ERROR", status=400, param="vad.threshold"
                )


def _event(ev: Any) -> dict[str, Any]:
    if isinstance(ev, UtterancePartial):
        return {
            "type": "transcript",
            "utterance_id": ev.utterance,
            "text": ev.partial.stable,
            "unstable": ev.partial.unstable,
            "is_partial": True,
        }
    if isinstance(ev, UtteranceFinal):
        t = ev.transcript
        return {
            "type": "transcript_final",
            "utterance_id": ev.utterance,
            "text": t.text,
            "is_partial": False,
            "language": t.language,
            "duration": t.duration,
            "confidence": t.confidence,
            "audio_start_ms": round(ev.audio_start_ms),
            "audio_end_ms": round(ev.audio_end_ms),
            "latency_ms": round(ev.latency_ms, 1),
        }
    if isinstance(ev, UtteranceStarted):
        return {"type": "speech_started", "utterance_id": ev.utterance, "audio_start_ms": round(ev.audio_start_ms)}
    if isinstance(ev, UtteranceStopped):
        return {"type": "speech_stopped", "utterance_id": ev.utterance, "audio_end_ms": round(ev.audio_end_ms)}
    assert isinstance(ev, TranscriptionError)
    return {"type": "error", "utterance_id": ev.utterance, "code": ev.code, "message": ev.message}


class _Stream:
    """One connection: decode frames, feed the session, forward its events."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.speech = ws.app.state.services.speech
        self.session: TranscriptionSession | None = None
        self.config: _Config | None = None
        self.resampler: Resampler | None = None
        self._send_lock = asyncio.Lock()
        self.closed = False  # the server closed the socket (stream ended): nothing more is sent
        self.ending: asyncio.Task[None] | None = None

    async def send(self, data: dict[str, Any]) -> None:
        async with self._send_lock:
            if not self.closed:
                await self.ws.send_text(orjson.dumps(data).decode())

    def end_soon(self, why: StreamEnd) -> None:
        """The lease's callback (timer, revocation, shutdown): error event, then close."""
        self.ending = asyncio.get_running_loop().create_task(self._end(why))

    async def _end(self, why: StreamEnd) -> None:
        with contextlib.suppress(Exception):
            await self.send({"type": "error", "code": why.code, "message": why.message, "param": None})
            await self.close(why.close_code, why.code)

    async def close(self, code: int, reason: str = "") -> None:
        """Close once (the stream's end and the receive loop may both want to)."""
        if not self.closed:
            self.closed = True
            await self.ws.close(code=code, reason=reason)

    async def error(self, exc: CozyError) -> None:
        await self.send({"type": "error", "code": exc.code, "message": exc.message, "param": exc.param})

    async def start(self, msg: dict[str, Any]) -> None:
        self.config = _Config(msg, self.speech.settings.vad)
        c = self.config
        await self.speech.loaded()
        self.session = self.speech.open_stream(language=c.language, prompt=c.prompt, vad=c.vad, use_vad=c.use_vad)
        self.resampler = Resampler(c.sample_rate, 16000) if c.sample_rate != 16000 else None

    async def forward(self) -> None:
        assert self.session is not None
        while (ev := await self.session.next_event()) is not None:
            await self.send(_event(ev))

    async def audio(self, data: bytes) -> None:
        assert self.config is not None and self.session is not None
        fmt = self.config.format
        if fmt == "pcm16":
            samples = np.frombuffer(data, dtype="<i2", count=len(data) // 2).astype(np.int16, copy=False)
        else:
            samples = ulaw_decode(data) if fmt == "pcmu" else alaw_decode(data)
        if self.resampler is not None:
            samples = self.resampler.process(samples)
        await self.session.feed(samples)

    async def control(self, text: str) -> bool:
        """Handle a JSON message; True when the client asked to end."""
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            await self.error(CozyError("messages must be JSON objects", code="VALIDATION_INVALID_JSON"))
            return False
        if not isinstance(msg, dict):
            await self.error(CozyError("messages must be JSON objects", code="VALIDATION_INVALID_JSON"))
            return False
        kind = msg.get("type", "config")
        if kind in ("config", "start", "session.update"):
            if self.session is not None:
                await self.error(CozyError("config must be the first message", code="VALIDATION_ERROR", param="type"))
                return False
            await self.start(msg)
            return False
        if self.session is None:
            await self.start({})
        assert self.session is not None
        if kind == "commit":
            self.session.commit()
            return False
        if kind in ("end", "stop", "close", "finish"):
            return True
        await self.error(
            CozyError(f"unknown message type {kind!r} (config, commit, end)", code="VALIDATION_ERROR", param="type")
        )
        return False


async def stt_stream(ws: WebSocket) -> None:
    await ws.accept()
    services = ws.app.state.services
    max_message = services.settings.api.stt_stream.max_message_bytes
    stream = _Stream(ws)
    principal = getattr(ws.state, "principal", None)
    try:  # per-user share (app.quotas.stt_streams_per_user), released in the finally below
        quota = services.quotas.acquire("stt_streams", principal)
    except QuotaExceeded as exc:
        await stream.error(exc)
        await ws.close(code=1013, reason=exc.code)
        return
    try:
        lease = services.stt_streams.open(
            stream.end_soon, user_id=principal and principal.user_id, key_id=principal and principal.key_id
        )
    except CozyError as exc:
        quota.release()
        await stream.error(exc)
        await ws.close(code=1013, reason=exc.code)
        return
    forwarder: asyncio.Task[None] | None = None
    ended = False
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect" or lease.ended is not None:
                break
            text, data = message.get("text"), message.get("bytes")
            if len(text if text is not None else data or b"") > max_message:
                await stream.close(1009, f"message too big (limit {max_message} bytes)")
                return
            try:
                if text is not None:
                    ended = await stream.control(text)
                elif data is not None:
                    if stream.session is None:
                        await stream.start({})
                    await stream.audio(data)
                if forwarder is None and stream.session is not None:
                    forwarder = asyncio.get_running_loop().create_task(stream.forward())
            except CozyError as exc:
                await stream.error(exc)
                if exc.status >= 500 or stream.session is None:
                    await stream.close(1011 if exc.status >= 500 else 1008)
                    return
            if ended:
                break
        if ended and stream.session is not None:
            await stream.session.finish()
            if forwarder is not None:
                await forwarder
            await stream.send({"type": "done"})
            await stream.close(1000)
        elif ended:
            await stream.send({"type": "done"})
            await stream.close(1000)
    except WebSocketDisconnect:
        pass
    finally:
        lease.release()
        quota.release()
        if forwarder is not None and not forwarder.done():
            forwarder.cancel()
        if stream.session is not None:
            await stream.session.aclose()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            if forwarder is not None:
                await forwarder
        if stream.ending is not None:
            with contextlib.suppress(Exception):
                await stream.ending

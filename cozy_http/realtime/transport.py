"""`WS /v1/realtime`: moves frames between the socket and the session actor, nothing more.

Reader: JSON text frames → actor mailbox (cancel/truncate on the control lane). Writer: the
actor's events → JSON frames, renamed for beta clients. When the actor stops (duration limit,
idle timeout, restart budget spent, shutdown) its final `error` event is flushed and the socket
closes cleanly.

Bounds (`api.realtime`): a message over `max_message_bytes` closes the socket with 1009; client
events wait in a mailbox bounded in bytes (`max_queued_bytes`: over it, `rate_limit_exceeded`);
server events are serialized as they are emitted and a client that lets more than
`max_outbox_bytes` of them pile up is disconnected with 1008.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import itertools
import logging
import uuid
from typing import Any

import orjson
from starlette.websockets import WebSocket

from cozy_actors.realtime.actor import CONTROL_EVENTS, AppendAudio, ClientEvent
from cozy_actors.runtime import MailboxClosed, MailboxFull, StopReason
from cozy_core.errors import CozyError

from .dialect import incoming_beta, outgoing_beta

log = logging.getLogger("cozy.realtime")

OUTBOX_LIMIT = 10_000  # events; with api.realtime.max_outbox_bytes, a client that stops reading is disconnected
CLOSE_TOO_BIG = 1009  # RFC 6455 "message too big": a message over api.realtime.max_message_bytes
CLOSE_POLICY = 1008  # the client does not read its events (outbox over its byte or event bound)
_CLOSE = object()
_APPEND = "input_audio_buffer.append"
_APPEND_KEYS = frozenset({"type", "audio", "event_id"})


def _plain_append(event: Any, max_bytes: int) -> bytes | None:
    """The audio of an `input_audio_buffer.append` that the session would take as it is, decoded
    here (None: anything else, including every append the session answers with an error).

    Why: it is ~25 messages a second per call, and handing the actor the bytes (`AppendAudio`, as
    WebRTC does) skips the per-event shape validation and dispatch that no well-formed append needs.
    Only an event that would pass them all takes this path, so behaviour and errors are unchanged.
    """
    if type(event) is not dict or event.get("type") != _APPEND or not event.keys() <= _APPEND_KEYS:
        return None
    audio, event_id = event.get("audio"), event.get("event_id")
    if type(audio) is not str or not (event_id is None or (type(event_id) is str and len(event_id) <= 512)):
        return None
    if len(audio) // 4 * 3 > max_bytes:
        return None
    try:
        pcm = binascii.a2b_base64(audio, strict_mode=True)  # C-level check, same acceptance as validate=True
    except (binascii.Error, ValueError):
        return None
    return None if len(pcm) % 2 else pcm  # odd: refused for audio/pcm, with the event's id


def _wants_beta(ws: WebSocket, offered: list[str]) -> bool:
    return "realtime=v1" in ws.headers.get("openai-beta", "") or "openai-beta.realtime-v1" in offered


def _error_event(message: str, code: str, event_id: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        },
    }


async def realtime_endpoint(ws: WebSocket) -> None:
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    beta = _wants_beta(ws, offered)
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    services = ws.app.state.services
    limits = services.settings.api.realtime
    max_message, max_outbox = limits.max_message_bytes, limits.max_outbox_bytes
    max_append = limits.max_audio_append_bytes
    outbox: asyncio.Queue[str | object] = asyncio.Queue()
    counter = itertools.count(1)
    prefix = f"evt_{uuid.uuid4().hex[:12]}_"
    queued = 0  # characters of serialized events waiting in the outbox
    close: tuple[int, str] = (1000, "")
    writer_task: asyncio.Task[None] | None = None

    def emit(event: dict[str, Any]) -> None:
        # Serialized here, not in the writer: the outbox is bounded by what it really holds.
        nonlocal queued, close
        if close[0] != 1000:
            return  # disconnecting a client that does not read
        event["event_id"] = f"{prefix}{next(counter)}"
        if beta and (event := outgoing_beta(event)) is None:  # type: ignore[assignment]
            return
        text = orjson.dumps(event).decode()
        queued += len(text)
        if queued > max_outbox or outbox.qsize() >= OUTBOX_LIMIT:
            close = (CLOSE_POLICY, "client is not reading its events")
            if writer_task is not None:
                writer_task.cancel()
            return
        outbox.put_nowait(text)

    q = ws.query_params
    try:
        ref = await services.realtime.open(
            emit,
            model=q.get("model"),
            personality_id=q.get("cozy_personality_id"),
            session_id=q.get("cozy_session_id"),
            user_id=getattr(ws.state, "principal", None) and ws.state.principal.user_id,
            key_id=getattr(ws.state, "principal", None) and ws.state.principal.key_id,
            principal=getattr(ws.state, "principal", None),
        )
    except CozyError as exc:
        await ws.send_text(
            orjson.dumps({**_error_event(exc.message, exc.code, param=exc.param), "event_id": f"{prefix}0"}).decode()
        )
        await ws.close(code=1013 if exc.status == 429 or exc.status >= 500 else 1008, reason=exc.code)
        return

    async def writer() -> None:
        nonlocal queued
        while True:
            text = await outbox.get()
            if text is _CLOSE or close[0] != 1000:
                return
            assert isinstance(text, str)
            queued -= len(text)
            await ws.send_text(text)

    async def reader() -> None:
        nonlocal close
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            size = len(text) if text is not None else len(message.get("bytes") or b"")
            if size > max_message:
                close = (CLOSE_TOO_BIG, f"message too big (limit {max_message} bytes)")
                return
            if text is None:
                emit(_error_event("Binary frames are not part of the protocol; send JSON text.", "invalid_event"))
                continue
            try:
                event = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                emit(_error_event(f"Invalid JSON: {exc}", "invalid_json"))
                continue
            message: ClientEvent | AppendAudio
            if (pcm := _plain_append(event, max_append)) is not None:
                message, control = AppendAudio(pcm), False
            else:
                if beta and isinstance(event, dict):
                    event = incoming_beta(event)
                etype = event.get("type") if isinstance(event, dict) else None
                control = isinstance(etype, str) and etype in CONTROL_EVENTS  # a list as `type` is unhashable
                message = ClientEvent(event)
            try:
                ref.tell(message, control=control, nbytes=size)
            except MailboxFull:
                emit(
                    _error_event(
                        "Too many events queued; slow down.",
                        "rate_limit_exceeded",
                        event.get("event_id")
                        if isinstance(event, dict) and isinstance(event.get("event_id"), str)
                        else None,
                    )
                )
            except MailboxClosed:
                return

    async def watch_actor() -> None:
        await ref.wait_stopped()
        outbox.put_nowait(_CLOSE)  # the writer flushes the final events, then the socket closes

    writer_task = asyncio.create_task(writer())
    tasks = [asyncio.create_task(reader()), writer_task, asyncio.create_task(watch_actor())]
    try:
        await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await ref.stop(StopReason.NORMAL, "client disconnected")
        if not writer_task.done() and close[0] == 1000:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer_task, 2.0)  # flush the final events
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            # Bounded: a client that does not read would hold the close (and this handler) forever.
            await asyncio.wait_for(ws.close(code=close[0], reason=close[1]), 2.0)

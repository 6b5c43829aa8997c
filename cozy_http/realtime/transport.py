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
from cozy_actors.realtime.items import error_event
from cozy_actors.runtime import MailboxClosed, MailboxFull, StopReason
from cozy_core.errors import CozyError
from cozy_http.forward import FORWARDED_HEADER
from cozy_http.realtime.interruption_query import interruption_query

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


def _event_id(event: Any) -> str | None:
    return event.get("event_id") if isinstance(event, dict) and isinstance(event.get("event_id"), str) else None


def _call_refuses(event: Any) -> tuple[str, str] | None:
    from cozy_http.webrtc.oai_calls import pinned_format

    return pinned_format(event)


async def _attach_call(ws: WebSocket, call_id: str, emit: Any) -> tuple[Any, Any]:
    """The sideband of a WebRTC call (`GET /v1/realtime?call_id=`): its actor and a detach function.
    It needs a real credential of the call's user or an admin, not an ephemeral key."""
    calls = getattr(getattr(ws.app.state, "webrtc", None), "openai", None)
    if calls is None:
        raise CozyError("WebRTC calls are not enabled here", code="RESOURCE_NOT_FOUND", status=404, param="call_id")
    if getattr(ws.state, "ephemeral_session", None) is not None:
        raise CozyError("a sideband needs an API key or JWT, not an ephemeral key", code="AUTH_FORBIDDEN", status=403)
    return await calls.attach(call_id, getattr(ws.state, "principal", None), emit)  # type: ignore[no-any-return]


async def _relayed(ws: WebSocket, call_id: str, offered: list[str]) -> bool:
    """A sideband for a call that another worker holds is relayed there (frames both ways), once:
    a relayed socket is answered by its receiver whatever it finds."""
    calls = getattr(getattr(ws.app.state, "webrtc", None), "openai", None)
    if calls is None or FORWARDED_HEADER in ws.headers or getattr(ws.state, "ephemeral_session", None) is not None:
        return False
    address = await calls.held_elsewhere(call_id, getattr(ws.state, "principal", None))
    return address is not None and await ws.app.state.forwarder.relay_websocket(ws, address, offered)


async def realtime_endpoint(ws: WebSocket) -> None:
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if "call_id" in ws.query_params and await _relayed(ws, ws.query_params["call_id"], offered):
        return
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

    # Pause-then-decide is opt-in here (clients stop playback themselves on speech_started): only
    # `?cozy_interruption=pause` gets it and its `cozy.*` events; a stock OpenAI client never does.
    interruption = ws.query_params.get("cozy_interruption")
    cozy_events = interruption == "pause"

    def emit(event: dict[str, Any]) -> None:
        # Serialized here, not in the writer: the outbox is bounded by what it really holds.
        nonlocal queued, close
        if close[0] != 1000:
            return  # disconnecting a client that does not read
        if not cozy_events and event["type"].startswith("cozy."):
            return
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
    detach = None  # a sideband (`?call_id=`): the call's actor is not ours to stop
    try:
        if "call_id" in q:
            ref, detach = await _attach_call(ws, q["call_id"], emit)
        else:
            ref = await services.realtime.open(
                emit,
                model=q.get("model"),
                personality_id=q.get("cozy_personality_id"),
                session_id=q.get("cozy_session_id"),
                user_id=getattr(ws.state, "principal", None) and ws.state.principal.user_id,
                key_id=getattr(ws.state, "principal", None) and ws.state.principal.key_id,
                principal=getattr(ws.state, "principal", None),
                config=getattr(ws.state, "ephemeral_session", None),  # an `ek_...` key's session
                interruption=interruption_query(q, "cancel"),  # the WebSocket's default: cancel
                echo_cancellation=q.get("cozy_echo_cancellation"),
            )
    except CozyError as exc:
        await services.ephemeral_keys.give_back(getattr(ws.state, "ephemeral_key", None))  # it started nothing
        await ws.send_text(
            orjson.dumps({**error_event(exc.message, exc.code, param=exc.param), "event_id": f"{prefix}0"}).decode()
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
                emit(error_event("Binary frames are not part of the protocol; send JSON text.", "invalid_event"))
                continue
            try:
                event = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                emit(error_event(f"Invalid JSON: {exc}", "invalid_json"))
                continue
            message: ClientEvent | AppendAudio
            if (pcm := _plain_append(event, max_append)) is not None:
                message, control = AppendAudio(pcm), False
            else:
                if beta and isinstance(event, dict):
                    event = incoming_beta(event)
                if detach is not None and (refused := _call_refuses(event)):  # a sideband: the call's audio is Opus
                    emit(error_event(refused[0], "invalid_value", _event_id(event), refused[1]))
                    continue
                etype = event.get("type") if isinstance(event, dict) else None
                control = isinstance(etype, str) and etype in CONTROL_EVENTS  # a list as `type` is unhashable
                message = ClientEvent(event)
            try:
                ref.tell(message, control=control, nbytes=size)
            except MailboxFull:
                emit(error_event("Too many events queued; slow down.", "rate_limit_exceeded", _event_id(event)))
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
        if detach is None:
            await ref.stop(StopReason.NORMAL, "client disconnected")
        else:
            detach()  # the call goes on; only this watcher leaves
        if not writer_task.done() and close[0] == 1000:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer_task, 2.0)  # flush the final events
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            # Bounded: a client that does not read would hold the close (and this handler) forever.
            await asyncio.wait_for(ws.close(code=close[0], reason=close[1]), 2.0)

"""`WS /v1/realtime`: moves frames between the socket and the session actor, nothing more.

Reader: JSON text frames → actor mailbox (cancel/truncate on the control lane). Writer: the
actor's events → JSON frames, renamed for beta clients. When the actor stops (duration limit,
idle timeout, restart budget spent, shutdown) its final `error` event is flushed and the socket
closes cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from typing import Any

import orjson
from starlette.websockets import WebSocket

from cozy_actors.realtime.actor import CONTROL_EVENTS, ClientEvent
from cozy_actors.runtime import MailboxClosed, MailboxFull, StopReason
from cozy_core.errors import CozyError

from .dialect import incoming_beta, outgoing_beta

log = logging.getLogger("cozy.realtime")

OUTBOX_LIMIT = 10_000  # events; a client that stops reading is disconnected, not buffered forever
_CLOSE = object()


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
    outbox: asyncio.Queue[Any] = asyncio.Queue()
    counter = itertools.count(1)
    prefix = f"evt_{uuid.uuid4().hex[:12]}_"

    def emit(event: dict[str, Any]) -> None:
        if outbox.qsize() >= OUTBOX_LIMIT:
            return  # the writer closes the socket: see below
        event["event_id"] = f"{prefix}{next(counter)}"
        outbox.put_nowait(event)

    services = ws.app.state.services
    q = ws.query_params
    try:
        ref = await services.realtime.open(
            emit,
            model=q.get("model"),
            personality_id=q.get("cozy_personality_id"),
            session_id=q.get("cozy_session_id"),
            user_id=getattr(ws.state, "principal", None) and ws.state.principal.user_id,
            key_id=getattr(ws.state, "principal", None) and ws.state.principal.key_id,
        )
    except CozyError as exc:
        await ws.send_text(
            orjson.dumps({**_error_event(exc.message, exc.code, param=exc.param), "event_id": f"{prefix}0"}).decode()
        )
        await ws.close(code=1008 if exc.status < 500 else 1013, reason=exc.code)
        return

    async def writer() -> None:
        while True:
            event = await outbox.get()
            if event is _CLOSE:
                return
            if outbox.qsize() >= OUTBOX_LIMIT - 1:
                raise ConnectionError("client is not reading its events")
            if beta and (event := outgoing_beta(event)) is None:
                continue
            await ws.send_text(orjson.dumps(event).decode())

    async def reader() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                emit(_error_event("Binary frames are not part of the protocol; send JSON text.", "invalid_event"))
                continue
            try:
                event = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                emit(_error_event(f"Invalid JSON: {exc}", "invalid_json"))
                continue
            if beta and isinstance(event, dict):
                event = incoming_beta(event)
            etype = event.get("type") if isinstance(event, dict) else None
            control = isinstance(etype, str) and etype in CONTROL_EVENTS  # a list as `type` is unhashable
            try:
                ref.tell(ClientEvent(event), control=control)
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

    tasks = [asyncio.create_task(reader()), asyncio.create_task(writer()), asyncio.create_task(watch_actor())]
    try:
        await asyncio.wait(tasks[:2], return_when=asyncio.FIRST_COMPLETED)
    finally:
        await ref.stop(StopReason.NORMAL, "client disconnected")
        if not tasks[1].done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(tasks[1], 2.0)  # flush the final events
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await ws.close(code=1000)

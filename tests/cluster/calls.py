"""A realtime call through the proxy, seen from its client: raw WebSocket JSON events (the GA
dialect, tests/e2e/realtime_support.py), collected in the background so a test can wait for the
events a text turn from elsewhere makes inside the call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import websockets

from tests.cluster.proxy import NODE_HEADER, Proxy
from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL

TEXT_SESSION = {"type": "realtime", "output_modalities": ["text"]}
# Where a call's client sees an item: a user item when it is added, an assistant item when done.
USER_ITEM = ("conversation.item.added", "conversation.item.created", "conversation.item.done")
ASSISTANT_ITEM = ("conversation.item.done", "response.output_item.done")


class Call:
    """One open call: `node` served its upgrade; `events` is every server event so far."""

    def __init__(self, ws: Any, node: str) -> None:
        self.ws = ws
        self.node = node
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.events.append(json.loads(raw))
                self._changed.set()

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def wait_for(self, match: Any, what: str, timeout: float = 10, start: int = 0) -> dict[str, Any]:
        """The first event from index `start` on (received or still to come) where `match(event)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events[start:]:
                if match(event):
                    return event
            left = deadline - time.monotonic()
            assert left > 0 and not self.closed, f"the call's client never saw {what}; it saw {self.types()}"
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def wait_closed(self, timeout: float = 10) -> None:
        """Until the connection is gone (the server closed it or died)."""
        done, _ = await asyncio.wait([self._reader], timeout=timeout)
        assert done, f"the call on {self.node} was still open after {timeout:g} s"

    def types(self) -> list[str]:
        return [e.get("type", "?") for e in self.events]

    async def turn(self, text: str) -> str:
        """A typed turn inside the call: the reply's text once `response.done` arrived."""
        start = len(self.events)
        await self.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
            }
        )
        await self.send({"type": "response.create"})
        done = await self.wait_for(
            lambda e: e.get("type") == "response.done", f"response.done of {text!r}", timeout=15, start=start
        )
        assert done["response"]["status"] == "completed", done
        return "".join(item_text(i) for i in done["response"]["output"])

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


def item_text(item: dict[str, Any]) -> str:
    """The text of a message item's content parts (typed, written or spoken)."""
    return "".join(p.get("text") or p.get("transcript") or "" for p in item.get("content") or [])


def is_item(role: str, text: str, types: tuple[str, ...]) -> Any:
    def match(e: dict[str, Any]) -> bool:
        item = e.get("item") or {}
        return e.get("type") in types and item.get("role") == role and item_text(item) == text

    return match


async def open_call(proxy: Proxy, session_id: str) -> Call:
    """Connect through the proxy with `cozy_session_id`; a text-mode session once `session.updated`.
    Raises what the connection raises, or AssertionError when the server refuses the call."""
    url = f"{proxy.ws_url}/v1/realtime?model={STUB_MODEL}&cozy_session_id={session_id}"
    ws = await websockets.connect(url, additional_headers={"Authorization": f"Bearer {ADMIN_KEY}"}, open_timeout=5)
    call = Call(ws, ws.response.headers.get(NODE_HEADER, "?"))
    try:
        first = await call.wait_for(lambda e: True, "a first event", timeout=5)
        assert first["type"] == "session.created", f"the call was refused: {first}"
        await call.send({"type": "session.update", "session": TEXT_SESSION})
        await call.wait_for(lambda e: e.get("type") == "session.updated", "session.updated")
    except BaseException:
        await call.close()
        raise
    return call


async def reconnect(proxy: Proxy, session_id: str, timeout: float = 30) -> tuple[Call, list[str]]:
    """Reopen the call until a node takes it (a dead owner's lease may need its TTL to lapse);
    returns the call and why earlier attempts failed."""
    deadline = time.monotonic() + timeout
    failures: list[str] = []
    while True:
        try:
            return await open_call(proxy, session_id), failures
        except (OSError, AssertionError, websockets.WebSocketException, TimeoutError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:200])
            assert time.monotonic() < deadline, f"no node took the call over in {timeout:g} s: {failures[-5:]}"
            await asyncio.sleep(0.3)

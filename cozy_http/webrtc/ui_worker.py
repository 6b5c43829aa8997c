"""The /ui page of `cozy serve --workers N` lives on one worker; the others forward to it.

Why: the page is a Gradio app whose state is in its process: the sign-in cookie's token, the
event queue a click's result streams back on, and the peer connection of its call. The kernel
spreads a browser's connections over the workers' listeners (SO_REUSEPORT), so without this a
page signed in on one worker was refused (401) by the next connection that reached another.
Every /ui request (HTTP, SSE and WebSocket alike) is therefore served by the node's first worker
(slot `w0`): another worker relays it there over the internal address that worker registered
(cozy_http/forward.py, every header passed, Host and cookies included). If that worker is not
live (restarting: its row lapses after the placement ttl), a worker serves the page itself rather
than fail: one more sign-in.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from cozy_actors.worker import sibling_workers
from cozy_core.errors import CozyError

from ..forward import FORWARDED_HEADER

ADDRESS_TTL_S = 2.0  # how long a looked-up address of the page's worker is reused


class UiWorker:
    def __init__(self, services: Any) -> None:
        self.services = services
        worker_id: str = services.worker_id
        base, sep, _ = worker_id.rpartition("-w")
        self.page_worker = f"{base}-w0" if sibling_workers() > 1 and sep else worker_id
        self._address: tuple[float, str | None] = (0.0, None)

    @property
    def here(self) -> bool:
        return self.page_worker == self.services.worker_id

    async def forwarded(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Relay this /ui request to the page's worker; False to serve it here."""
        if self.here or any(name == FORWARDED_HEADER.encode() for name, _ in scope.get("headers", ())):
            return False
        address = await self._page_address()
        if address is None:
            return False
        forwarder = scope["app"].state.forwarder
        if scope["type"] == "websocket":
            ws = WebSocket(scope, receive, send)
            offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
            return await forwarder.relay_websocket(ws, address, offered, every_header=True)  # type: ignore[no-any-return]
        # Not answering is a 503 with Retry-After (its body was read): by then its row has lapsed or
        # it is back, and the retry is served there or here.
        response = await forwarder.forward(Request(scope, receive), address, owner=self.page_worker, every_header=True)
        await response(scope, receive, send)
        return True

    async def _page_address(self) -> str | None:
        at, address = self._address
        if time.monotonic() - at < ADDRESS_TTL_S:
            return address
        try:
            address = await self.services.placement.address_of(self.page_worker)
        except CozyError:
            address = None
        self._address = (time.monotonic(), address)
        return address

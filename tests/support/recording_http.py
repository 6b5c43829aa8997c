"""A real local HTTP server (aiohttp, 127.0.0.1, a port the OS picks) that records every request and
answers with canned bodies, for testing HTTP clients against the request/response shapes of a
service's public docs. It runs in the test's own event loop; `stop()` closes it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]  # lower-case names
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)  # multipart text fields
    files: list[tuple[str, str, str, bytes]] = field(default_factory=list)  # (field, filename, type, content)


@dataclass
class Reply:
    body: Any = None  # JSON-encoded; a callable gets the Recorded request and returns the body
    status: int = 200
    delay_s: float = 0.0


class RecordingServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.routes: dict[tuple[str, str], Reply] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, method: str, path: str, body: Any = None, *, status: int = 200, delay_s: float = 0.0) -> None:
        """Answer `method path` (query string ignored) with `body`; unrouted requests get a 404."""
        self.routes[(method.upper(), path)] = Reply(body, status, delay_s)

    def take(self) -> list[Recorded]:
        """The requests recorded so far, forgetting them."""
        got, self.requests = self.requests, []
        return got

    async def start(self) -> RecordingServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = Recorded(
            request.method,
            request.path,
            list(request.query.items()),
            {k.lower(): v for k, v in request.headers.items()},
        )
        if request.content_type == "application/json":
            rec.json = await request.json()
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                content = await part.read()  # type: ignore[union-attr]
                if part.filename:  # type: ignore[union-attr]
                    ctype = part.headers.get("Content-Type", "")  # type: ignore[union-attr]
                    rec.files.append((part.name or "", part.filename, ctype, bytes(content)))  # type: ignore[union-attr]
                else:
                    rec.form[part.name or ""] = bytes(content).decode()  # type: ignore[union-attr]
        self.requests.append(rec)
        reply = self.routes.get((request.method, request.path))
        if reply is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        body = reply.body(rec) if isinstance(reply.body, Callable) else reply.body  # type: ignore[arg-type]
        return web.json_response(body, status=reply.status)

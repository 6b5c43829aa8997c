"""Per-request context: request id, latency metric by route, and one JSON access line.

Pure ASGI (no BaseHTTPMiddleware): it adds no task or body copy per request, which matters on
the chat hot path.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cozy_actors.observability.metrics import HTTP_LATENCY, labelled

from .context import reset_request_id, set_request_id
from .logs import get_logger

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, access_log: bool = True, worker_id: str | None = None) -> None:
        self.app = app
        self.access_log = access_log
        # `x-cozy-worker` on every response: which worker process answered (`cozy serve --workers N`).
        self.worker = (b"x-cozy-worker", worker_id.encode("latin-1")) if worker_id else None
        self.log = get_logger("cozy.access")  # bound after logging is configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else f"req_{uuid.uuid4().hex}"
        token = set_request_id(request_id)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        start = time.perf_counter()
        status = 500
        rid = request_id.encode()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", rid))
                if self.worker is not None and not any(k.lower() == b"x-cozy-worker" for k, _ in headers):
                    headers.append(self.worker)  # (a forwarded answer names its owner; x-cozy-forwarded-by us)
                message["headers"] = headers
            elif message["type"] == "websocket.accept" and self.worker is not None:
                message["headers"] = [*message.get("headers", ()), self.worker]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_of(scope)
            if scope["type"] == "http":
                labelled(HTTP_LATENCY, route, scope["method"], str(status)).observe(elapsed)
            if self.access_log:
                self.log.info(
                    "request",
                    route=route,
                    method=scope.get("method"),
                    status=status,
                    latency_ms=round(elapsed * 1000, 2),
                )
            structlog.contextvars.unbind_contextvars("request_id", "user_id")  # user_id: bound by auth
            reset_request_id(token)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _route_of(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return f"{scope.get('root_path', '')}{path}"
    return "unmatched"

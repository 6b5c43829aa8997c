"""Every HTTP request body is capped while it streams in, before auth or a route does any work.

Pure ASGI, like the other middleware: a request that declares a Content-Length within its cap goes
through untouched (the server never delivers more than it declared), one over it is answered 413
before a byte is read, and only a body without a length (chunked) has its `receive` wrapped, which
counts bytes and stops at the cap. No copy of the body, no task. The 413 carries
`connection: close`, so the client stops uploading the rest.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cozy_core.errors import CozyError

from .errors import error_response


class BodyTooLarge(CozyError):
    """413 VALIDATION_BODY_TOO_LARGE; the connection is closed after the answer."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body is larger than this route's limit of {limit} bytes",
            code="VALIDATION_BODY_TOO_LARGE",
            status=413,
        )
        self.headers = {"connection": "close"}


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, default: int, by_route: Mapping[str, int]) -> None:
        self.app = app
        self.default = default
        self.by_route = dict(by_route)

    def limit_for(self, path: str) -> int:
        return self.by_route.get(path, self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.by_route.get(scope["path"], self.default)
        declared: int | None = None
        chunked = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                declared = int(value) if value.isdigit() else -1
            elif key == b"transfer-encoding":
                chunked = True
        if not chunked:  # no length and not chunked: no body (RFC 9112 6.3)
            if declared is not None and declared > limit:
                await error_response(BodyTooLarge(limit))(scope, receive, send)
                return
            await self.app(scope, receive, send)  # the server delivers at most `declared` bytes
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited, send)

"""Edge authentication: read the bearer token, ask the auth service who it is, apply the rate limit.

Pure ASGI, like the request-context middleware: no task or body copy per request. Every path
needs a token except `security.public_paths` (and `POST /v1/auth/token`, which is how one gets a
JWT). WebSockets may carry the key as the `openai-insecure-api-key.<key>` subprotocol, because
browsers cannot set headers. The principal lands in `request.state.principal`. The caller's
address (cozy_http.client_address: the peer, or via trusted proxies X-Forwarded-For) goes with the
token, so failed authentications are limited per address before any lookup.
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from cozy_actors.auth.principal import Principal, RateLimited
from cozy_actors.observability.metrics import RATE_LIMITED
from cozy_core.errors import CozyError

from .client_address import ClientAddress
from .context import current_request_id
from .errors import error_response

TOKEN_PATH = "/v1/auth/token"
_WS_KEY_PREFIX = "openai-insecure-api-key."


def bearer_token(scope: Scope) -> str | None:
    """The token from `Authorization: Bearer`, else (WebSocket) from the API-key subprotocol."""
    protocols = None
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
        if key == b"sec-websocket-protocol":
            protocols = value.decode("latin-1")
    if protocols and scope["type"] == "websocket":
        for proto in protocols.split(","):
            proto = proto.strip()
            if proto.startswith(_WS_KEY_PREFIX):
                return proto[len(_WS_KEY_PREFIX) :] or None
    return None


class AuthMiddleware:
    def __init__(
        self, app: ASGIApp, *, services: object, public_paths: list[str], client_address: ClientAddress | None = None
    ) -> None:
        self.app = app
        self.services = services
        self.public = tuple(p.rstrip("/") or "/" for p in public_paths)
        self.client_address = client_address or ClientAddress()

    def is_public(self, path: str) -> bool:
        if path == TOKEN_PATH:
            return True
        return any(path == p or path.startswith(p + "/") for p in self.public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        services = self.services
        try:
            principal: Principal = await services.auth.authenticate(  # type: ignore[attr-defined]
                bearer_token(scope),
                request_id=current_request_id(),
                path=scope["path"],
                client=self.client_address(scope),
            )
            decision = await services.ratelimit.check(  # type: ignore[attr-defined]
                principal.rate_key, principal.rate_limit_rpm, principal.rate_limit_burst
            )
            if not decision.allowed:
                RATE_LIMITED.inc()
                raise RateLimited(decision.retry_after_s, decision.retry_after_header)
        except CozyError as err:
            if scope["type"] == "websocket":
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008, "reason": err.code})
                return
            await error_response(err)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        structlog.contextvars.bind_contextvars(user_id=principal.user_id)
        await self.app(scope, receive, send)


def principal_of(request: Request) -> Principal:
    """The authenticated caller (set by AuthMiddleware; routes behind it always have one)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise CozyError("this route needs authentication", code="AUTH_MISSING_TOKEN", status=401)
    return principal

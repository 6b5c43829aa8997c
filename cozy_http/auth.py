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

from cozy_actors.auth.ephemeral import is_ephemeral
from cozy_actors.auth.principal import AuthInvalid, Principal, RateLimited
from cozy_actors.observability.metrics import RATE_LIMITED
from cozy_core.errors import CozyError

from .client_address import ClientAddress
from .context import current_request_id
from .errors import error_response
from .forward import signed_by_sibling

TOKEN_PATH = "/v1/auth/token"
_WS_KEY_PREFIX = "openai-insecure-api-key."
# Where an ephemeral key (`ek_...`) is a credential: it starts one Realtime session, nothing else.
EPHEMERAL_PATHS = frozenset({("http", "/v1/realtime/calls"), ("websocket", "/v1/realtime")})


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
            token = bearer_token(scope)
            if is_ephemeral(token):
                principal = await self._redeem(scope, token or "")
            else:
                principal = await services.auth.authenticate(  # type: ignore[attr-defined]
                    token, request_id=current_request_id(), path=scope["path"], client=self.client_address(scope)
                )
            if not signed_by_sibling(scope, services.auth.secret):  # type: ignore[attr-defined]
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

    async def _redeem(self, scope: Scope, token: str) -> Principal:
        """An ephemeral key, taken once: its creator's principal; its session config goes to the route
        (`state.ephemeral_session`). Failures count against the caller's address like any bad token."""
        auth, path, client = self.services.auth, scope["path"], self.client_address(scope)  # type: ignore[attr-defined]
        if (scope["type"], path) not in EPHEMERAL_PATHS or scope.get("method", "POST") != "POST":
            auth._refuse("ephemeral_key_misused", current_request_id(), path, client=client)
            raise AuthInvalid("an ephemeral key only starts a session: POST /v1/realtime/calls or WS /v1/realtime")
        charged = await auth.failures.charge(client, current_request_id(), path)
        try:
            redeemed = await self.services.ephemeral_keys.redeem(token)  # type: ignore[attr-defined]
        except AuthInvalid:
            auth._refuse("ephemeral_key_invalid", current_request_id(), path, client=client)
            raise
        if charged:
            await auth.failures.refund(client)
        state = scope.setdefault("state", {})
        state["ephemeral_session"], state["ephemeral_key"] = redeemed.session, token  # given back if unused
        return redeemed.principal


def principal_of(request: Request) -> Principal:
    """The authenticated caller (set by AuthMiddleware; routes behind it always have one)."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise CozyError("this route needs authentication", code="AUTH_MISSING_TOKEN", status=401)
    return principal

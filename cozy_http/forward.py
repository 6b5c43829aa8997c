"""Forwarding a request to the worker that owns its conversation (DESIGN, Placement: Forwarding).

When the service says another live worker owns the conversation (`OwnedElsewhere`), the edge
sends the same method, path, query, body and credentials to the owner's internal address over
one shared httpx client, and passes the owner's answer back as it comes: status and headers as
the owner sent them, the body chunk by chunk (SSE streams through, nothing is buffered). The
forwarded request carries `x-cozy-forwarded: <this worker>`; a request that carries it is never
forwarded again (the owner answers 409 if it is not the owner after all), so two workers that
disagree about ownership cannot bounce a request between them. It also carries an HMAC of
(worker, method, path, time) under the deployment's shared secret (`JWT_SECRET_KEY`, which every
worker and node must share for JWTs anyway): the owner then skips the caller's rate limit, which the
receiving worker already charged. A bare or forged header is charged as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import http.cookiejar
import logging
import time
from typing import Any

import httpx
import orjson
import websockets
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from cozy_actors.quotas import ServerFull

from .sse import until_disconnect

log = logging.getLogger("cozy.http")

FORWARDED_HEADER = "x-cozy-forwarded"
SIGNATURE_HEADER = "x-cozy-forward-signature"
SIGNATURE_MAX_AGE_S = 30.0  # clocks of the deployment's machines agree far better than this
# What the owner needs to answer as this worker would: credentials, body type, and the request id
# (one id in both workers' logs).
_REQUEST_HEADERS = ("authorization", "content-type", "accept", "x-request-id", "openai-beta", "user-agent")
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te", b"trailer"}
    | {b"transfer-encoding", b"upgrade"}
)


def was_forwarded(request: Request) -> bool:
    """The request came from another worker: answer it here or refuse it, never forward it again."""
    return FORWARDED_HEADER in request.headers


def forward_signature(secret: str, worker: str, method: str, path: str, at: float | None = None) -> str:
    """`<unix time>.<hex HMAC-SHA256>` of what the owner checks: who forwarded which request when."""
    stamp = str(int(time.time() if at is None else at))
    mac = hmac.new(secret.encode(), f"{worker}\n{method}\n{path}\n{stamp}".encode(), hashlib.sha256)
    return f"{stamp}.{mac.hexdigest()}"


def signed_by_sibling(scope: Scope, secret: str) -> bool:
    """The request was forwarded by a worker of this deployment (a valid, fresh signature): its
    caller was charged there already."""
    worker = signature = None
    for name, value in scope.get("headers", ()):
        if name == b"x-cozy-forwarded":
            worker = value.decode("latin-1")
        elif name == b"x-cozy-forward-signature":
            signature = value.decode("latin-1")
    if not worker or not signature or "." not in signature:
        return False
    stamp = signature.split(".", 1)[0]
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > SIGNATURE_MAX_AGE_S:
        return False
    want = forward_signature(secret, worker, scope.get("method", "GET"), scope["path"], int(stamp))
    return hmac.compare_digest(want, signature)


class Forwarder:
    """One pooled HTTP client for every forwarded request of this worker."""

    def __init__(
        self,
        worker_id: str,
        *,
        secret: str | None = None,
        retry_after_s: float = 1.0,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float | None = 150.0,
    ) -> None:
        self.worker_id = worker_id
        self.secret = secret  # None: forwarded requests are charged again at the owner
        self.retry_after_s = retry_after_s
        self._timeout = httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=10.0, pool=5.0)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # No cookie jar: a Set-Cookie relayed to one caller (a page's sign-in) must never ride
            # along on the next caller's request (it signed every later browser in as that user).
            jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
            self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False, cookies=jar)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _headers(self, source: Any, method: str, path: str, every: bool) -> dict[str, str]:
        """What the owner gets: the credentials and body type (`every`: all the caller's headers but
        hop-by-hop ones, Host and cookies included, for a page app), marked and signed as forwarded."""
        if every:
            headers = {k: v for k, v in source.items() if k.encode() not in _HOP_BY_HOP and k != "content-length"}
            headers.pop("sec-websocket-key", None)  # the relay's own handshake makes these
            headers.pop("sec-websocket-version", None)
            headers.pop("sec-websocket-extensions", None)
            headers.pop("sec-websocket-protocol", None)
        else:
            headers = {k: v for k in _REQUEST_HEADERS if (v := source.get(k)) is not None}
        headers[FORWARDED_HEADER] = self.worker_id
        if self.secret:
            headers[SIGNATURE_HEADER] = forward_signature(self.secret, self.worker_id, method, path)
        return headers

    async def forward(
        self, request: Request, address: str, *, owner: str = "", every_header: bool = False
    ) -> ForwardedResponse:
        """Send `request` to the worker at `address`; its answer, streamed. The owner not answering
        (refused, timed out) is a 503 RESOURCE_BUSY with Retry-After: its lease lapses within
        seconds and the conversation can then be taken here."""
        url = address.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = self._headers(request.headers, request.method, request.url.path, every_header)
        body = await request.body()
        client = self._http()
        try:
            upstream = await client.send(
                client.build_request(request.method, url, headers=headers, content=body), stream=True
            )
        except httpx.HTTPError as exc:
            log.warning("forward to %s (%s) failed: %r", owner or address, address, exc)
            raise ServerFull(
                f"the conversation is live on another worker ({owner or address}), which did not answer "
                f"({type(exc).__name__}); retry shortly",
                self.retry_after_s,
                code="RESOURCE_BUSY",
            ) from exc
        return ForwardedResponse(upstream, self.worker_id)

    async def relay_websocket(
        self, ws: WebSocket, address: str, offered: list[str], *, every_header: bool = False
    ) -> bool:
        """Relay a WebSocket (the sideband of a call held by another worker) to the owner: the same
        path, query, credentials and subprotocols; frames both ways as they come; either side's
        close closes the other with its code. False if the owner did not answer (`ws` untouched)."""
        base = address.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        url = base + ws.url.path + (f"?{ws.url.query}" if ws.url.query else "")
        headers = self._headers(ws.headers, "GET", ws.url.path, every_header)
        headers.pop("host", None)  # websockets sets it from the URL
        try:
            upstream = await websockets.connect(
                url,
                additional_headers=headers,
                subprotocols=offered or None,  # type: ignore[arg-type]
                max_size=None,  # the owner enforces the client's limits
                open_timeout=self._timeout.connect,
                compression=None,
            )
        except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
            log.warning("websocket relay to %s failed: %r", address, exc)
            return False
        await ws.accept(subprotocol=upstream.subprotocol)

        async def to_owner() -> None:
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    message = await ws.receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    await upstream.send(message["text"] if message.get("text") is not None else message["bytes"])

        async def to_client() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for data in upstream:
                    await (ws.send_text(data) if isinstance(data, str) else ws.send_bytes(data))

        pumps = [asyncio.create_task(to_owner()), asyncio.create_task(to_client())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            await upstream.close()
            code = upstream.close_code if upstream.close_code not in (None, 1005, 1006) else 1000
            with contextlib.suppress(Exception):  # the client may be gone already
                await ws.close(code=code, reason=upstream.close_reason or "")
        return True


class ForwardedResponse:
    """ASGI response relaying an httpx streaming response: the owner's status and headers (less
    hop-by-hop ones), then its body bytes as they arrive. A client that goes away closes the
    upstream request, so the owner sees the disconnect too (and cancels the turn)."""

    def __init__(self, upstream: httpx.Response, worker_id: str) -> None:
        self.upstream = upstream
        self.status_code = upstream.status_code
        self.headers = [(k, v) for k, v in upstream.headers.raw if k.lower() not in _HOP_BY_HOP]
        self.headers.append((b"x-cozy-forwarded-by", worker_id.encode("latin-1")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await until_disconnect(receive, self._relay(send))
        finally:
            await self.upstream.aclose()

    async def _relay(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.headers})
        try:
            async for chunk in self.upstream.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except httpx.HTTPError as exc:
            # The owner went away mid-answer: an SSE client gets an error event (as for a
            # mid-stream model failure); anything else ends short, as the owner's did.
            log.warning("forwarded response cut off: %r", exc)
            if self.upstream.headers.get("content-type", "").startswith("text/event-stream"):
                err = {"error": {"message": "the owning worker went away mid-stream", "type": "server_error"}}
                err["error"]["code"] = "RESOURCE_SESSION_ENDED"
                body = b"data: " + orjson.dumps(err) + b"\n\n"
                await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

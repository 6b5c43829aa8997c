"""Forwarding a request to the worker that owns its conversation (DESIGN, Placement: Forwarding).

When the service says another live worker owns the conversation (`OwnedElsewhere`), the edge
sends the same method, path, query, body and credentials to the owner's internal address over
one shared httpx client, and passes the owner's answer back as it comes: status and headers as
the owner sent them, the body chunk by chunk (SSE streams through, nothing is buffered). The
forwarded request carries `x-cozy-forwarded: <this worker>`; a request that carries it is never
forwarded again (the owner answers 409 if it is not the owner after all), so two workers that
disagree about ownership cannot bounce a request between them.
"""

from __future__ import annotations

import logging

import httpx
import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from cozy_actors.quotas import ServerFull

from .sse import until_disconnect

log = logging.getLogger("cozy.http")

FORWARDED_HEADER = "x-cozy-forwarded"
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


class Forwarder:
    """One pooled HTTP client for every forwarded request of this worker."""

    def __init__(
        self,
        worker_id: str,
        *,
        retry_after_s: float = 1.0,
        connect_timeout_s: float = 2.0,
        read_timeout_s: float | None = 150.0,
    ) -> None:
        self.worker_id = worker_id
        self.retry_after_s = retry_after_s
        self._timeout = httpx.Timeout(connect=connect_timeout_s, read=read_timeout_s, write=10.0, pool=5.0)
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def forward(self, request: Request, address: str, *, owner: str = "") -> ForwardedResponse:
        """Send `request` to the worker at `address`; its answer, streamed. The owner not answering
        (refused, timed out) is a 503 RESOURCE_BUSY with Retry-After: its lease lapses within
        seconds and the conversation can then be taken here."""
        url = address.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k in _REQUEST_HEADERS if (v := request.headers.get(k)) is not None}
        headers[FORWARDED_HEADER] = self.worker_id
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

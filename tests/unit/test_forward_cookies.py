"""The forwarder relays callers' cookies, never keeps them: a Set-Cookie relayed to one caller (the
/ui sign-in) once rode along on every later relayed request, so any browser whose connection reached
the relaying worker was signed in as whoever had signed in through it before."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cozy_http.forward import Forwarder
from tests.support.procs import free_port


async def _login(request: Request) -> JSONResponse:
    response = JSONResponse({"ok": True})
    response.set_cookie("access-token", "admin-secret", path="/")
    return response


async def _whoami(request: Request) -> JSONResponse:
    return JSONResponse({"cookie": request.headers.get("cookie")})


def _request(path: str, headers: dict[str, str]) -> Request:
    scope: dict[str, Any] = {
        "type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()], "scheme": "http",
        "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1234), "root_path": "",
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    return Request(scope, receive)


async def _relay(forwarder: Forwarder, address: str, path: str, headers: dict[str, str]) -> tuple[list, bytes]:
    response = await forwarder.forward(_request(path, headers), address, every_header=True)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await response({"type": "http"}, receive, send)
    return sent[0]["headers"], b"".join(m.get("body", b"") for m in sent[1:])


async def test_a_relayed_set_cookie_never_reaches_the_next_caller() -> None:
    app = Starlette(routes=[Route("/login", _login), Route("/whoami", _whoami)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to await)
        await asyncio.sleep(0.02)
    forwarder = Forwarder("node-w1")
    address = f"http://127.0.0.1:{port}"
    try:
        headers, _ = await _relay(forwarder, address, "/login", {"host": "x"})
        assert (b"set-cookie", b"access-token=admin-secret; Path=/; SameSite=lax") in headers  # relayed on
        _, body = await _relay(forwarder, address, "/whoami", {"host": "x"})  # another browser, no cookie
        assert body == b'{"cookie":null}'
        _, body = await _relay(forwarder, address, "/whoami", {"host": "x", "cookie": "access-token=mine"})
        assert body == b'{"cookie":"access-token=mine"}'  # a caller's own cookie goes through as it is
    finally:
        await forwarder.close()
        server.should_exit = True
        await serving

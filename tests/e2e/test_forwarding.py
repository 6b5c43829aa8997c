"""Forwarding to the conversation's owner (issue 11 item 3, contract C5), over real HTTP.

The owner is a real `cozy serve` (its stub LLM streams a token every 80 ms, so pass-through can be
told from buffering). The forwarding workers are real uvicorn servers in this process running the
real chat route, error handlers and request-context middleware; their chat service says the
conversation is owned elsewhere, as the placement lease (branch `placement`) will.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from cozy_actors.conversation.chat import ChatRequest
from cozy_actors.placement import OwnedElsewhere, Owner
from cozy_core.errors import CozyError
from cozy_http.errors import handle_cozy_error, handle_http_exception, handle_unexpected
from cozy_http.forward import FORWARDED_HEADER, SIGNATURE_HEADER, Forwarder, forward_signature
from cozy_http.middleware import RequestContextMiddleware
from cozy_http.routes import chat
from tests.e2e.accounts import make_user
from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, new_session_id, sse_events, start_cozy_server
from tests.support.procs import free_port, start_stub_llm

pytestmark = pytest.mark.timeout(120)

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
SECRET = "e2e-jwt-secret-not-for-production"  # the JWT_SECRET_KEY tests.e2e.conftest gives servers
LIGHT = {  # the owner answers chat only: no speech models to load
    "COZY_STT_ENABLED": "false",
    "COZY_TTS_ENABLED": "false",
    "COZY_VAD_ENABLED": "false",
    "COZY_WEBRTC_ENABLED": "false",
}


class OwnedByOther:
    """This worker's chat service when another worker holds the conversation's lease."""

    def __init__(self, worker_id: str, address: str) -> None:
        self.owner = Owner(worker_id, address, "call")
        self.forwarded: list[bool] = []  # what each request it was asked told it

    async def start_turn(self, req: ChatRequest) -> Any:
        self.forwarded.append(req.forwarded)
        raise OwnedElsewhere(req.session_id or "", self.owner)


class Worker:
    """A real uvicorn server running the chat route of a worker that does not own the session."""

    def __init__(self, worker_id: str, secret: str | None = None) -> None:
        self.worker_id = worker_id
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.chat = OwnedByOther("nobody", "http://127.0.0.1:9")
        app = Starlette(
            routes=[Route("/v1/chat/completions", chat.chat_completions, methods=["POST"])],
            middleware=[Middleware(RequestContextMiddleware, access_log=False)],
            exception_handlers={
                CozyError: handle_cozy_error,
                HTTPException: handle_http_exception,
                Exception: handle_unexpected,
            },
        )
        app.state.services = SimpleNamespace(chat=self.chat, worker_id=worker_id)
        app.state.forwarder = self.forwarder = Forwarder(worker_id, secret=secret, retry_after_s=2)
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        )
        self._task: asyncio.Task[Any] | None = None

    def owned_by(self, worker_id: str, address: str) -> None:
        self.chat.owner = Owner(worker_id, address, "call")

    async def __aenter__(self) -> Worker:
        self._task = asyncio.create_task(self.server.serve())
        for _ in range(500):  # uvicorn says it listens by a flag only
            if self.server.started:
                return self
            await asyncio.sleep(0.02)
        raise RuntimeError(f"{self.worker_id} did not start")

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self._task is not None
        await self._task
        await self.forwarder.close()


@pytest.fixture(scope="module")
def owner() -> Iterator[CozyServer]:
    stub = start_stub_llm(token_ms=80)
    try:
        server = start_cozy_server(stub, LIGHT)
        try:
            yield server
        finally:
            server.stop()
    finally:
        stub.stop()


@pytest.fixture
async def worker(owner: CozyServer) -> AsyncIterator[Worker]:
    async with Worker("worker-a") as w:
        w.owned_by("worker-b", owner.root_url)
        yield w


def body(session: str, text: str, *, stream: bool, **extra: Any) -> dict[str, Any]:
    return {
        "model": STUB_MODEL,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
        "cozy": {"session_id": session, **extra},
    }


async def test_sse_streams_through_as_it_comes(worker: Worker, owner: CozyServer) -> None:
    session = new_session_id()
    text = "one two three four five six seven eight nine ten"
    arrivals: list[tuple[float, str]] = []
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream(
            "POST", f"{worker.url}/v1/chat/completions", json=body(session, text, stream=True), headers=AUTH
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-cozy-forwarded-by"] == "worker-a"
        async for chunk in r.aiter_text():
            arrivals.append((time.monotonic(), chunk))
    events = sse_events("".join(c for _, c in arrivals))
    assert events[-1] == "[DONE]"
    reply = "".join(
        json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1] if json.loads(e)["choices"]
    )
    assert reply == f"Echo: {text}"
    # 11 tokens 80 ms apart: they reach the client spread out, not in one lump at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 0.5, [round(t - arrivals[0][0], 3) for t, _ in arrivals]
    assert len(arrivals) >= 5
    assert worker.chat.forwarded == [False]
    async with httpx.AsyncClient(base_url=owner.root_url, headers=AUTH, timeout=30) as http:
        for _ in range(50):
            stored = (await http.get(f"/v1/chat/sessions/{session}/messages")).json()["data"]
            if len(stored) == 2:
                break
            await asyncio.sleep(0.1)
    assert [(m["role"], m["content"]) for m in stored] == [("user", text), ("assistant", f"Echo: {text}")]


async def test_json_status_and_headers_as_the_owner_answered(worker: Worker) -> None:
    async with httpx.AsyncClient(base_url=worker.url, headers=AUTH, timeout=30) as http:
        r = await http.post(
            "/v1/chat/completions",
            json=body(new_session_id(), "json please", stream=False),
            headers={"x-request-id": "req-forwarded-1"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "Echo: json please"
        assert r.headers["x-request-id"] == "req-forwarded-1"  # one id in both workers' logs
        assert r.headers["content-type"] == "application/json"
        assert r.headers["content-length"] == str(len(r.content))
        # The owner's error, as it answered it (this worker never resolved the personality).
        r = await http.post("/v1/chat/completions", json=body(new_session_id(), "x", stream=False, personality_id="no"))
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
        r = await http.post(
            "/v1/chat/completions",
            json=body(new_session_id(), "x", stream=False),
            headers={"authorization": "Bearer x"},
        )
        assert r.status_code == 401, r.text  # the caller's credentials went along, and were checked there


async def test_a_forwarded_request_is_never_forwarded_again(worker: Worker) -> None:
    async with Worker("worker-c") as other:
        worker.owned_by("worker-c", other.url)  # the two disagree: each thinks the other owns it
        other.owned_by("worker-a", worker.url)
        async with httpx.AsyncClient(base_url=worker.url, headers=AUTH, timeout=30) as http:
            r = await http.post("/v1/chat/completions", json=body(new_session_id(), "ping", stream=False))
            assert r.status_code == 409, r.text
            assert r.json()["error"]["code"] == "RESOURCE_SESSION_BUSY"
            assert r.headers["x-cozy-forwarded-by"] == "worker-a"
            r = await http.post(
                "/v1/chat/completions",
                json=body(new_session_id(), "pong", stream=False),
                headers={FORWARDED_HEADER: "someone"},
            )
            assert r.status_code == 409, r.text
            assert "x-cozy-forwarded-by" not in r.headers  # answered here, not sent on
    assert worker.chat.forwarded == [False, True]
    assert other.chat.forwarded == [True]


async def test_owner_unreachable_is_503_with_retry_after(worker: Worker) -> None:
    worker.owned_by("worker-gone", f"http://127.0.0.1:{free_port()}")
    async with httpx.AsyncClient(base_url=worker.url, headers=AUTH, timeout=30) as http:
        r = await http.post("/v1/chat/completions", json=body(new_session_id(), "hello?", stream=True))
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "RESOURCE_BUSY"
    assert "worker-gone" in r.json()["error"]["message"] and "did not answer" in r.json()["error"]["message"]
    assert r.headers["retry-after"] == "2"


async def test_a_signed_forward_is_not_charged_twice(owner: CozyServer) -> None:
    """The receiving worker charged the caller's rate limit already: the owner skips it for a request
    signed with the deployment's secret, and charges a bare or forged forwarding header as usual."""
    _, key = make_user(owner, rate_limit_rpm=1, rate_limit_burst=2)
    headers = {"Authorization": f"Bearer {key}"}
    async with Worker("worker-signed", secret=SECRET) as w:
        w.owned_by("worker-b", owner.root_url)
        async with httpx.AsyncClient(base_url=w.url, headers=headers, timeout=30) as http:
            for i in range(4):  # twice the burst, all forwarded: none charged at the owner
                r = await http.post("/v1/chat/completions", json=body(new_session_id(), f"n{i}", stream=False))
                assert r.status_code == 200, (i, r.text)
    path, url = "/v1/chat/completions", f"{owner.root_url}/v1/chat/completions"
    stale = forward_signature(SECRET, "worker-x", "POST", path, time.time() - 120)
    forged = forward_signature("not-the-secret", "worker-x", "POST", path)
    codes = []
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        for sig in (None, forged, stale):
            extra = {FORWARDED_HEADER: "worker-x", **({SIGNATURE_HEADER: sig} if sig else {})}
            r = await http.post(url, json=body(new_session_id(), "direct", stream=False), headers=extra)
            codes.append(r.status_code)
    assert codes == [200, 200, 429], codes  # the burst of 2, then refused: each one was charged

"""Operations endpoints (health, readiness, metrics, OpenAPI, docs) and client disconnects."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, new_session_id, start_cozy_server, user
from tests.support.procs import start_stub_llm

SLOW_TOKENS = 200
SLOW_TOKEN_MS = 50  # a 10 s answer: any early end is the server's doing


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# --- ops endpoints ---------------------------------------------------------------------------------
def test_health(http: httpx.Client) -> None:
    start = time.perf_counter()
    response = http.get("/health")
    elapsed = time.perf_counter() - start
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert elapsed < 0.5
    assert response.headers["x-request-id"]


def test_ready(http: httpx.Client) -> None:
    response = http.get("/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    checks = body["checks"]
    assert isinstance(checks, dict) and checks
    assert checks[f"llm:{STUB_MODEL}"]["ok"] is True


def test_metrics(http: httpx.Client, client: openai.OpenAI, cozy_server: CozyServer) -> None:
    client.chat.completions.create(model=STUB_MODEL, messages=user("for the metrics"))
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "cozy_http_request_duration_seconds" in text
    assert 'route="/v1/chat/completions"' in text
    assert "cozy_live_actors" in text
    assert "cozy_turn_stage_seconds" in text
    count = cozy_server.metric(
        "cozy_http_request_duration_seconds_count", route="/v1/chat/completions", method="POST", status="200"
    )
    assert count >= 1
    assert cozy_server.metric("cozy_turn_stage_seconds_count", stage="llm_first_token") >= 1
    assert cozy_server.metric("cozy_turn_stage_seconds_count", stage="turn_total") >= 1


def test_openapi(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    doc = json.loads(response.content)
    assert doc["openapi"].startswith("3.")
    assert "post" in doc["paths"]["/v1/chat/completions"]
    assert "/v1/models" in doc["paths"]
    assert doc["info"]["title"]


def test_docs_and_static_assets(http: httpx.Client) -> None:
    page = http.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "swagger-ui-bundle.js" in page.text
    assert "/openapi.json" in page.text
    bundle = http.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["content-type"]
    assert len(bundle.content) > 10_000
    css = http.get("/docs/static/swagger-ui.css")
    assert css.status_code == 200 and "css" in css.headers["content-type"]


# --- client disconnect (own server, behind a slow upstream) -------------------------------------------
@pytest.fixture(scope="module")
def slow_server() -> Iterator[CozyServer]:
    with start_stub_llm(token_ms=SLOW_TOKEN_MS, tokens=SLOW_TOKENS) as stub:
        server = start_cozy_server(stub)
        try:
            yield server
        finally:
            server.process.stop()


@pytest.fixture
def slow_client(slow_server: CozyServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=slow_server.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30) as c:
        yield c


def live_conversations(server: CozyServer) -> float:
    return server.metric("cozy_live_actors", kind="conversation")


def test_disconnect_cancels_the_turn(slow_server: CozyServer, slow_client: openai.OpenAI) -> None:
    baseline = live_conversations(slow_server)
    cancelled = slow_server.metric("cozy_turns_total", mode="text", outcome="cancelled")
    started = time.monotonic()
    stream = slow_client.chat.completions.create(model=STUB_MODEL, messages=user("talk a lot"), stream=True)
    chunks = iter(stream)
    first = next(chunks)
    assert first.choices[0].delta.role == "assistant"
    assert (next(chunks).choices[0].delta.content or "").startswith("tok")
    assert live_conversations(slow_server) == baseline + 1
    stream.close()
    assert wait_until(lambda: live_conversations(slow_server) == baseline, timeout=3), (
        f"live conversation actors stayed at {live_conversations(slow_server)} (baseline {baseline}) "
        f"after the client disconnected\n{slow_server.output()}"
    )
    assert wait_until(
        lambda: slow_server.metric("cozy_turns_total", mode="text", outcome="cancelled") == cancelled + 1, timeout=2
    )
    assert time.monotonic() - started < SLOW_TOKENS * SLOW_TOKEN_MS / 1000 / 2  # ended early, not by finishing


def test_disconnect_frees_the_session(slow_server: CozyServer, slow_client: openai.OpenAI) -> None:
    """After a disconnect the session takes the next turn at once (no 409 for the rest of the
    abandoned answer), and keeps the user's message plus at most the part that was streamed."""
    stub = slow_server.upstream
    sid = new_session_id()
    cozy = {"cozy": {"session_id": sid}}
    stream = slow_client.chat.completions.create(
        model=STUB_MODEL, messages=user("first question"), extra_body=cozy, stream=True
    )
    chunks = iter(stream)
    next(chunks)
    next(chunks)
    stream.close()
    stub.clear()
    follow_up: list[openai.ConflictError] = []

    def next_turn_accepted() -> bool:
        try:
            s = slow_client.chat.completions.create(
                model=STUB_MODEL, messages=user("second question"), extra_body=cozy, stream=True
            )
        except openai.ConflictError as exc:
            follow_up.append(exc)
            return False
        s.close()
        return True

    assert wait_until(next_turn_accepted, timeout=3), f"session still busy: {follow_up[-1:]}"
    (sent,) = stub.requests()
    roles = [m["role"] for m in sent["messages"]]
    assert sent["messages"][1] == {"role": "user", "content": "first question"}
    assert sent["messages"][-1] == {"role": "user", "content": "second question"}
    full = " ".join(f"tok{i}" for i in range(SLOW_TOKENS))
    assert roles in (["system", "user", "user"], ["system", "user", "assistant", "user"])
    if len(roles) == 4:
        partial = sent["messages"][2]["content"]
        assert partial and full.startswith(partial) and len(partial) < len(full)

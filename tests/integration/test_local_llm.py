"""The embedded default: a server with no upstream configured answers with the bundled SmolLM2
model on llama.cpp, through the openai SDK, streaming and not, without blocking the event loop."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.procs import free_port, start_process, wait_http_ok


@pytest.fixture(scope="module")
def local_server() -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COZY_LLM_")}
    env.update(COZY_LOG_LEVEL="warning", COZY_LOCAL_THREADS="2")
    proc = start_process(
        [sys.executable, "-m", "cozy_http.cli", "serve", "--host", "127.0.0.1", "--port", str(port)], None, env=env
    )
    with proc:
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/health", timeout=120, process=proc)
        yield base


def test_local_model_is_the_default_and_answers(local_server: str) -> None:
    client = openai.OpenAI(base_url=f"{local_server}/v1", api_key="unused", max_retries=0, timeout=120)
    ids = [m.id for m in client.models.list()]
    assert ids == ["smollm2-135m"]
    reply = client.chat.completions.create(
        model="anything", messages=[{"role": "user", "content": "Say hello in five words."}], max_tokens=24
    )
    assert reply.model == "smollm2-135m"
    assert reply.choices[0].message.content and reply.choices[0].message.content.strip()
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens > 0 and reply.usage.prompt_tokens > 0


def test_local_model_streams_while_event_loop_stays_responsive(local_server: str) -> None:
    client = openai.OpenAI(base_url=f"{local_server}/v1", api_key="unused", max_retries=0, timeout=120)
    stream = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Count from one to twenty in words."}],
        max_tokens=64,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    health_ms: list[float] = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
            if len(pieces) % 8 == 1:
                t = time.perf_counter()
                assert httpx.get(f"{local_server}/health", timeout=5).status_code == 200
                health_ms.append((time.perf_counter() - t) * 1000)
        if not chunk.choices:
            assert chunk.usage is not None and chunk.usage.completion_tokens > 0
    assert len(pieces) > 3
    # Generation runs on the worker pool: liveness answers quickly while tokens flow.
    assert max(health_ms) < 250, health_ms

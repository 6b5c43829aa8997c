"""The embedded default: a server with no upstream and no database configured answers with the
bundled SmolLM2 model on llama.cpp, through the openai SDK, streaming and not, without blocking the
event loop. It also starts the embedded PostgreSQL (in a temporary COZY_DATA_DIR) and, as on a
real first start, prints a one-time admin API key, which the clients here use."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.procs import free_port, start_process, wait_http_ok

KEY: dict[str, str] = {}  # the first-start admin key the server printed


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    drop = ("COZY_LLM_", "DATABASE_URL", "REDIS_URL", "COZY_BOOTSTRAP_ADMIN_KEY", "COZY_DATA_DIR", "COZY_AUTH_ENABLED")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(COZY_LOG_LEVEL="warning", COZY_LOCAL_THREADS="2", COZY_DATA_DIR=str(tmp_path_factory.mktemp("data")))
    proc = start_process(
        [sys.executable, "-m", "cozy_http.cli", "serve", "--host", "127.0.0.1", "--port", str(port)], None, env=env
    )
    with proc:
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(f"{base}/health", timeout=120, process=proc)
        found = re.search(r"API key (cozy-[A-Za-z0-9_-]{43})", proc.output())
        assert found, f"no first-start admin key in the log:\n{proc.output()}"
        KEY["admin"] = found[1]
        yield base


def test_local_model_is_the_default_and_answers(local_server: str) -> None:
    client = openai.OpenAI(base_url=f"{local_server}/v1", api_key=KEY["admin"], max_retries=0, timeout=120)
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
    client = openai.OpenAI(base_url=f"{local_server}/v1", api_key=KEY["admin"], max_retries=0, timeout=120)
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

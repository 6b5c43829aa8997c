"""Issue 10, item 2: nothing a request triggers can block the event loop.

Measured on main (a5a60c6): a chat message making the model call the built-in calculator with
`round(1, -10**7)` held the event loop 10.3 s (6.4 s of CPU on this machine); every other call
froze with it. Here a real `cozy serve` runs a live realtime session speaking a long reply while
another request makes the model call the calculator with hostile expressions: `/health` must keep
answering in < 100 ms and the realtime session must keep receiving audio.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.e2e.realtime_support import rt_client  # noqa: F401  (the fixture, on this module's cozy_server)
from tests.reliability.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, start_cozy_server
from tests.support.procs import StubLLMServer

pytestmark = pytest.mark.timeout(180)

HOSTILE = ["round(1, -10**7)", "round(7, -(10**8))", "9**9**9", "(10**99)**(10**99)"]
HEALTH_LIMIT_S = 0.100
# The reply is paced in 100 ms audio frames; a gap this long means the loop stopped, not jitter
# (on a loaded 2-core machine TTS between sentences stays far below it; the old code gave ~6 s).
AUDIO_GAP_LIMIT_S = 1.0
LONG_TEXT = " ".join(["This is a long answer that keeps going for quite a while, sentence after sentence."] * 10)


@pytest.fixture(scope="module")
def cozy_server(stub_llm: StubLLMServer) -> Iterator[CozyServer]:
    """This module's own server (rt_client from realtime_support connects to it)."""
    srv = start_cozy_server(stub_llm)
    yield srv
    srv.stop()


async def _probe_health(root: str, stop: asyncio.Event, out: list[float]) -> None:
    """GET /health back to back (every ~20 ms) until `stop`; records each latency."""
    async with httpx.AsyncClient(base_url=root, timeout=30) as http:
        while not stop.is_set():
            t0 = time.perf_counter()
            r = await http.get("/health")
            out.append(time.perf_counter() - t0)
            assert r.status_code == 200
            await asyncio.sleep(0.02)


async def _hostile_chat(base_url: str) -> list[str]:
    """One chat turn per hostile expression; returns what the model was told by the tool."""
    replies = []
    async with openai.AsyncOpenAI(base_url=base_url, api_key=ADMIN_KEY, max_retries=0, timeout=60) as client:
        for expr in HOSTILE:
            try:
                reply = await client.chat.completions.create(
                    model=STUB_MODEL,
                    messages=[{"role": "user", "content": f'CALL calculator {{"expression": "{expr}"}}'}],
                )
            except openai.APIStatusError as exc:  # e.g. 503 once a blocked loop trips admission control
                replies.append(f"HTTP {exc.status_code}: {exc.message}")
                continue
            replies.append(reply.choices[0].message.content or "")
    return replies


async def test_hostile_tool_call_blocks_neither_health_nor_live_audio(
    cozy_server: CozyServer,
    rt_client: openai.AsyncOpenAI,  # noqa: F811
) -> None:
    server = cozy_server
    async with rt_client.realtime.connect(model=STUB_MODEL) as conn:
        audio_at: list[float] = []
        done, streaming = asyncio.Event(), asyncio.Event()

        async def collect() -> None:
            async for event in conn:
                if event.type == "response.output_audio.delta":
                    audio_at.append(time.perf_counter())
                    if len(audio_at) >= 10:
                        streaming.set()
                elif event.type in ("response.done", "error"):
                    done.set()
                    return

        collector = asyncio.create_task(collect())
        await conn.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": LONG_TEXT}]}
        )
        await conn.response.create()
        await asyncio.wait_for(streaming.wait(), 60)  # the reply is speaking

        stop = asyncio.Event()
        latencies: list[float] = []
        prober = asyncio.create_task(_probe_health(server.root_url, stop, latencies))
        await asyncio.sleep(0.3)
        window_start = time.perf_counter()
        replies = await _hostile_chat(server.base_url)
        await asyncio.sleep(1.0)  # anything the hostile calls left running shows up here too
        window_end = time.perf_counter()
        stop.set()
        await prober
        in_window = [t for t in audio_at if window_start <= t <= window_end]
        still_speaking = not done.is_set()
        collector.cancel()

    stamps = [window_start, *in_window, window_end]
    gap = max(b - a for a, b in itertools.pairwise(stamps))
    print(f"/health max {max(latencies) * 1000:.1f} ms over {len(latencies)} probes; longest audio gap {gap:.3f} s")
    assert len(latencies) >= 10, latencies
    assert max(latencies) < HEALTH_LIMIT_S, f"/health took {max(latencies) * 1000:.0f} ms during hostile calls"
    assert still_speaking, "the reply ended before the hostile calls did: make LONG_TEXT longer"
    assert gap < AUDIO_GAP_LIMIT_S, f"no realtime audio for {gap:.2f} s during the hostile calls"
    for expr, reply in zip(HOSTILE, replies, strict=True):
        assert reply.startswith("Tool calculator returned:") and '"error"' in reply, (expr, reply)

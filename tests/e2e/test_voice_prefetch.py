"""Voice turns fetch their context inside the silence window: the speculative transcript decoded
at the user's pause starts the fetch, so end of speech does not wait for a slow engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import openai
import pytest

from tests.e2e.conftest import ADMIN_KEY, CozyServer, start_cozy_server
from tests.support.procs import StubLLMServer

from .realtime_support import Events, send_audio, silence, speech_clip  # noqa: F401
from .test_personalization import config_dir

SEARCH_S = 0.4  # every knowledge search sleeps this long first
SILENCE_MS = 1000  # end of speech is declared after this much silence


@pytest.fixture(scope="module")
def slow_knowledge_server(stub_llm: StubLLMServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CozyServer]:
    cfg = config_dir(tmp_path_factory.mktemp("ctx-slow"), knowledge={"options": {"inject_delay_s": SEARCH_S}})
    cozy = start_cozy_server(stub_llm, config_dir=cfg)
    try:
        yield cozy
    finally:
        cozy.stop()


async def test_voice_turn_finds_its_context_already_fetched(
    slow_knowledge_server: CozyServer,
    speech_clip: bytes,  # noqa: F811
) -> None:
    server = slow_knowledge_server
    stage = {"stage": "context"}
    sum0 = server.metric("cozy_turn_stage_seconds_sum", **stage)
    count0 = server.metric("cozy_turn_stage_seconds_count", **stage)
    ws = server.base_url.replace("http://", "ws://")
    vad = {"type": "server_vad", "silence_duration_ms": SILENCE_MS, "prefix_padding_ms": 300}
    async with (
        openai.AsyncOpenAI(api_key=ADMIN_KEY, base_url=server.base_url, websocket_base_url=ws, max_retries=0) as client,
        client.realtime.connect(model="stub-model") as conn,
    ):
        ev = Events(conn)
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": vad}}})
        await ev.wait("session.updated")
        await send_audio(conn, silence(1000) + speech_clip)
        sender = asyncio.create_task(send_audio(conn, silence(5000)))
        done = (await ev.wait("response.done", timeout=30))[0]
        sender.cancel()
        await ev.close()
    assert done.response.status == "completed"
    assert server.metric("cozy_turn_stage_seconds_count", **stage) - count0 == 1
    waited = server.metric("cozy_turn_stage_seconds_sum", **stage) - sum0
    assert waited < SEARCH_S / 2, waited  # the search ran while the user was silent, not after

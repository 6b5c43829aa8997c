"""Remote STT/TTS providers over real HTTP: an OpenAI-compatible stub upstream (the only fake)."""

from __future__ import annotations

import numpy as np
import pytest

from cozy_core.engines import EngineError
from cozy_media.stt.remote import OpenAISTT, RemoteSTTOptions
from cozy_media.tts.remote import OpenAITTS, RemoteTTSOptions
from tests.support.procs import free_port, start_stub_llm
from tests.support.stub_llm import STUB_TRANSCRIPT


@pytest.fixture(scope="module")
def stub():
    server = start_stub_llm()
    yield server
    server.stop()


async def test_transcribe_and_speak_through_upstream(stub) -> None:
    stt = OpenAISTT(RemoteSTTOptions(base_url=stub.base_url, model="whisper-1", api_key="sk-test"))
    tts = OpenAITTS(RemoteTTSOptions(base_url=stub.base_url, model="tts-1"))
    await stt.initialize()
    await tts.initialize()
    try:
        audio = (np.sin(np.arange(16000) / 10) * 0.2).astype(np.float32)
        result = await stt.transcribe(audio, language="en", prompt="time")
        assert result.text == STUB_TRANSCRIPT.strip()
        assert result.duration == 1.0 and result.language == "en"
        assert not stt.partials  # remote partials are opt-in (each re-sends the utterance)
        pcm = await tts.synthesize("Hello", voice="alloy")
        assert pcm.sample_rate == 24000 and len(pcm.samples) == int(24000 * 0.06 * 5)
    finally:
        await stt.close()
        await tts.close()


async def test_upstream_failures_map_to_engine_errors(stub) -> None:
    wrong_path = OpenAITTS(RemoteTTSOptions(base_url=stub.root_url + "/nope", model="tts-1"))
    down = OpenAISTT(RemoteSTTOptions(base_url=f"http://127.0.0.1:{free_port()}/v1", model="whisper-1"))
    await wrong_path.initialize()
    await down.initialize()
    try:
        with pytest.raises(EngineError) as exc:
            await wrong_path.synthesize("Hello", voice="alloy")
        assert exc.value.code == "ENGINE_UPSTREAM_ERROR" and "404" in exc.value.message
        with pytest.raises(EngineError) as exc:
            await down.transcribe(np.zeros(1600, dtype=np.float32))
        assert exc.value.code == "ENGINE_UNAVAILABLE"
    finally:
        await wrong_path.close()
        await down.close()
    with pytest.raises(EngineError) as exc:
        await wrong_path.synthesize("closed", voice="alloy")
    assert exc.value.code == "ENGINE_UNAVAILABLE"

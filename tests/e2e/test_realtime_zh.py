"""A Mandarin voice turn over WS /v1/realtime with the openai SDK and the zh personality: spoken
Mandarin (espeak-ng's cmn voice) in → a Simplified transcript from the zh pack's Whisper base → the
stub LLM's reply → Mandarin speech out (espeak-ng cmn), which the server's own zh STT hears back
through POST /v1/audio/transcriptions with language=zh."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import wave

import httpx
import openai
import pytest

from benchmarks.mandarin_cer import cer, is_simplified, speech_chars
from cozy_media.audio.resample import resample
from cozy_media.tts.espeak import EspeakOptions, EspeakTTS
from tests.e2e.conftest import ADMIN_KEY, CozyServer, start_cozy_server
from tests.media.zh_support import require_zh_pack
from tests.support.procs import StubLLMServer

from .realtime_support import Events, rt_client, send_audio, silence  # noqa: F401

pytestmark = pytest.mark.timeout(180)

SAID = "请帮我打电话给我的妈妈。"
PERSONALITY = {"cozy_personality_id": "concierge-zh"}
VAD = {"type": "server_vad", "silence_duration_ms": 500, "prefix_padding_ms": 300, "threshold": 0.5}


async def mandarin_pcm24(text: str) -> bytes:
    tts = EspeakTTS(EspeakOptions())
    await tts.initialize()
    audio = await tts.synthesize(text, voice="cmn")
    return resample(audio.samples, audio.sample_rate, 24000).astype("<i2").tobytes()


def wav24(pcm: bytes) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes(pcm)
    return buf.getvalue()


async def test_mandarin_voice_turn_with_the_zh_personality(
    rt_client: openai.AsyncOpenAI,  # noqa: F811
    cozy_server: CozyServer,
) -> None:
    require_zh_pack()
    clip = await mandarin_pcm24(SAID)
    async with rt_client.realtime.connect(model="stub-model", extra_query=PERSONALITY) as conn:
        ev = Events(conn)
        await ev.wait("session.created", timeout=120)  # the zh models load (and join) on first use
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": VAD}}})
        await ev.wait("session.updated")
        await send_audio(conn, silence(1000) + clip)
        speech_end = time.perf_counter()
        sender = asyncio.create_task(send_audio(conn, silence(4000)))
        completed = (await ev.wait("conversation.item.input_audio_transcription.completed", timeout=60))[0]
        heard = completed.transcript
        assert is_simplified(heard) and speech_chars(heard), heard
        edits, n = cer(SAID, heard)
        assert edits / n <= 0.5, heard  # offline this clip decodes exactly; the live pipeline adds padding
        done = (await ev.wait("response.done", timeout=60))[0]
        sender.cancel()
        assert done.response.status == "completed"
        first_audio = ev.times("response.output_audio.delta")[0]
        reply = ev.of("response.output_audio_transcript.done")[0].transcript
        assert reply.startswith("Echo:") and speech_chars(heard) in speech_chars(reply), reply
        audio = b"".join(base64.b64decode(d.delta) for d in ev.of("response.output_audio.delta"))
        await ev.close()
    han = sum(1 for ch in reply if "\u4e00" <= ch <= "\u9fff")
    # espeak-ng speaks every Han character (about 0.3 s each); the English piper voice skips them.
    assert len(audio) / 48 >= 200 * han, (len(audio) / 48, han)
    assert first_audio - speech_end < 5.0
    async with httpx.AsyncClient(base_url=cozy_server.base_url, timeout=60) as http:
        r = await http.post(
            "/audio/transcriptions",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            files={"file": ("reply.wav", wav24(audio), "audio/wav")},
            data={"model": "whisper-1", "language": "zh"},
        )
    assert r.status_code == 200, r.text
    back = r.json()["text"]
    assert is_simplified(back) and any("\u4e00" <= ch <= "\u9fff" for ch in back), back
    edits, n = cer(heard, back)
    assert edits / n <= 0.8, (heard, back)  # the reply's Mandarin part, heard back by the zh STT


async def test_transcription_language_zh_picks_the_zh_stt(rt_client: openai.AsyncOpenAI) -> None:  # noqa: F811
    """The default (English) personality, `transcription.language: "zh"`: the zh STT hears the turn."""
    require_zh_pack()
    clip = await mandarin_pcm24(SAID)
    async with rt_client.realtime.connect(model="stub-model") as conn:
        ev = Events(conn)
        tr = {"model": "whisper-1", "language": "zh"}
        audio = {"input": {"turn_detection": VAD, "transcription": tr}}
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "audio": audio})
        await ev.wait("session.updated")
        await send_audio(conn, silence(1000) + clip)
        sender = asyncio.create_task(send_audio(conn, silence(4000)))
        heard = (await ev.wait("conversation.item.input_audio_transcription.completed", timeout=60))[0].transcript
        sender.cancel()
        await ev.close()
    edits, n = cer(SAID, heard)
    assert is_simplified(heard) and edits / n <= 0.5, heard


async def test_speech_endpoint_speaks_mandarin_with_the_cmn_voice(cozy_server: CozyServer) -> None:
    """`voice: cmn` on /v1/audio/speech is the zh route's espeak-ng voice; the zh STT hears it back."""
    require_zh_pack()
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=cozy_server.base_url, timeout=60, headers=auth) as http:
        r = await http.post(
            "/audio/speech", json={"model": "tts-1", "voice": "cmn", "input": SAID, "response_format": "wav"}
        )
        assert r.status_code == 200, r.text
        files = {"file": ("said.wav", r.content, "audio/wav")}
        heard = await http.post("/audio/transcriptions", files=files, data={"model": "whisper-1", "language": "zh"})
    assert heard.status_code == 200, heard.text
    text = heard.json()["text"]
    edits, n = cer(SAID, text)
    assert is_simplified(text) and edits / n <= 0.5, text


async def test_zh_session_without_its_model_says_why_and_keeps_text(stub_llm: StubLLMServer) -> None:
    """A zh personality whose speech route cannot load (here: a pack model that does not exist, as when
    the zh pack is not installed): the session still starts, says why in an `error`, and text works."""
    server = start_cozy_server(stub_llm, extra_env={"COZY_ZH_STT_MODEL": "pack:whisper-missing"})
    try:
        ws = server.base_url.replace("http://", "ws://")
        client = openai.AsyncOpenAI(api_key=ADMIN_KEY, base_url=server.base_url, websocket_base_url=ws, max_retries=0)
        async with client, client.realtime.connect(model="stub-model", extra_query=PERSONALITY) as conn:
            ev = Events(conn)
            await ev.wait("session.created", timeout=60)
            error = (await ev.wait("error"))[0].error
            assert error.code == "ENGINE_UNAVAILABLE" and "whisper-missing" in error.message, error
            await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            await conn.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "你好"}]}
            )
            await conn.response.create()
            done = (await ev.wait("response.done"))[0]
            assert done.response.status == "completed"
            assert done.response.output[0].content[0].text == "Echo: 你好"
            await ev.close()
    finally:
        server.stop()

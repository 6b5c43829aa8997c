"""SpeechService checks (before any work starts) and building it from configuration."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cozy_actors.config import ConfigError, load_settings
from cozy_actors.engines.registry import default_registry
from cozy_actors.engines.speech import SpeechConfigError, build_speech
from cozy_actors.services import CozyServices, StartupError
from cozy_core.errors import CozyError
from cozy_media.audio.frames import PcmAudio
from cozy_media.speech import SpeechService, SpeechSettings
from cozy_media.speech_checks import SpeechLimits

from .fakes import FakeSTT, FakeTTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
async def service() -> SpeechService:
    svc = SpeechService(
        stt=FakeSTT("hello world"),
        tts=FakeTTS(),
        vad=None,
        limits=SpeechLimits(max_input_chars=20, response_formats=frozenset({"mp3", "wav", "pcm"})),
        settings=SpeechSettings(default_voice="v1", voice_aliases={"alloy": "v2"}),
    )
    await svc.initialize()
    return svc


def code_of(fn, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(CozyError) as exc:
        fn(*args)
    return exc.value.code


async def test_checks(service: SpeechService) -> None:
    assert service.resolve_voice("v2") == "v2"
    assert service.resolve_voice("ALLOY") == "v2"
    assert service.resolve_voice(None) == "v1"
    assert code_of(service.resolve_voice, "nobody") == "VALIDATION_UNKNOWN_VOICE"
    assert code_of(service.check_text, "x" * 21) == "VALIDATION_TEXT_TOO_LONG"
    assert code_of(service.check_text, "   ") == "VALIDATION_ERROR"
    assert service.check_format("WAV").name == "wav"
    assert code_of(service.check_format, "opus") == "VALIDATION_AUDIO_FORMAT"  # not in this deployment's list
    assert code_of(service.check_speed, 5.0) == "VALIDATION_ERROR"
    assert service.check_speed(None) == 1.0
    assert code_of(service.check_upload_size, 26 * 1024 * 1024) == "VALIDATION_FILE_TOO_LARGE"
    with pytest.raises(CozyError) as exc:
        service.open_stream(use_vad=True)  # no VAD engine configured
    assert exc.value.code == "ENGINE_UNAVAILABLE" and exc.value.status == 503


async def test_synthesis_is_cached(service: SpeechService) -> None:
    fmt = service.check_format("pcm")
    first = b"".join([c async for c in service.speech_chunks("Hi there.", voice="v1", fmt=fmt, speed=1.0)])
    calls = len(service.tts.texts)  # type: ignore[union-attr]
    again = await service.synthesize("Hi there.", voice="v1", fmt=fmt, speed=1.0)
    assert again == first and len(service.tts.texts) == calls  # type: ignore[union-attr]
    assert len(first) == 2 * 24000 * 2 // 10  # 2 words, 100 ms each, 24 kHz PCM16


async def test_transcribe_uses_engine(service: SpeechService) -> None:
    audio = PcmAudio(np.zeros(16000, dtype=np.int16), 16000)
    assert (await service.transcribe(audio)).text.startswith("hello")
    assert (await service.health())["stt"].ok


def copy_config(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(ROOT / "config", target)
    shutil.copytree(ROOT / "personalities", tmp_path / "personalities")
    return target


def test_engines_yaml_without_speech_sections_loads(tmp_path: Path) -> None:
    cfg = copy_config(tmp_path)
    text = (cfg / "engines.yaml").read_text()
    (cfg / "engines.yaml").write_text(text.split("# --- Speech")[0])
    s = load_settings(cfg, env={})
    assert s.engines.stt.provider == "faster_whisper" and s.engines.tts.default_voice == "joe"
    assert s.engines.audio.max_upload_bytes == 25 * 1024 * 1024 and s.engines.audio.max_input_chars == 4096
    speech = build_speech(s.engines, default_registry(load_plugins=False))
    assert speech.resolve_voice("alloy") == "joe"


def test_bad_speech_config_names_file_key_reason(tmp_path: Path) -> None:
    cfg = copy_config(tmp_path)
    text = (cfg / "engines.yaml").read_text()
    text = text.replace("    cpu_threads: ${COZY_STT_THREADS:-2}", "    cpu_threads: lots\n    colour: blue")
    text = text.replace("provider: piper ", "provider: nosuch ")
    (cfg / "engines.yaml").write_text(text)
    s = load_settings(cfg, env={})
    with pytest.raises(StartupError) as exc:
        CozyServices(s).build()
    lines = exc.value.problems
    assert any(
        line.endswith("stt.options.cpu_threads: Input should be a valid integer, unable to parse string as an integer")
        for line in lines
    ), lines
    assert any("stt.options.colour: Extra inputs are not permitted" in line for line in lines), lines
    assert any("tts.provider: unknown tts provider 'nosuch'" in line for line in lines), lines
    assert all(line.startswith(str(cfg / "engines.yaml")) for line in lines)
    with pytest.raises(SpeechConfigError):
        build_speech(s.engines, default_registry(load_plugins=False))


def test_unknown_formats_and_aliases_rejected(tmp_path: Path) -> None:
    cfg = copy_config(tmp_path)
    text = (cfg / "engines.yaml").read_text().replace("response_formats: [mp3,", "response_formats: [ogg, mp3,")
    text = text.replace("    alloy: joe\n", "    alloy: jane\n")
    (cfg / "engines.yaml").write_text(text)
    with pytest.raises(ConfigError, match="unknown response format"):
        load_settings(cfg, env={})
    (cfg / "engines.yaml").write_text(text.replace("response_formats: [ogg, mp3,", "response_formats: [mp3,"))
    with pytest.raises(SpeechConfigError, match=r"tts\.voice_aliases\.alloy"):
        build_speech(load_settings(cfg, env={}).engines, default_registry(load_plugins=False))


def test_openapi_lists_the_speech_endpoints() -> None:
    from cozy_http.openapi import build_openapi

    paths = build_openapi("test")["paths"]
    for path in (
        "/v1/audio/transcriptions",
        "/v1/audio/stt",
        "/v1/audio/stt/stream",
        "/v1/audio/speech",
        "/v1/audio/tts",
        "/v1/audio/tts/stream",
    ):
        assert path in paths

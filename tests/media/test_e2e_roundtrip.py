"""Real models end to end: text → bundled TTS → bundled STT through the server (WER < 15 % on
twelve sentences), and the event loop stays responsive (/health < 50 ms) while 8 transcriptions
and 8 syntheses run at once."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx

from .conftest import SENTENCES, Clip, SpeechServer
from .helpers import wer

PROBE = """
import json, select, sys, time, httpx
with httpx.Client(base_url=sys.argv[1], timeout=10) as http:
    http.get("/health")  # connected: only the requests themselves are timed
    print("ready", flush=True)
    out = []
    while not select.select([sys.stdin], [], [], 0.02)[0]:
        t0 = time.perf_counter()
        assert http.get("/health").status_code == 200
        out.append((time.perf_counter() - t0) * 1000)
print(json.dumps(out))
"""


def test_tts_to_stt_round_trip_wer(speech_server: SpeechServer) -> None:
    def one(text: str) -> str:
        with httpx.Client(base_url=speech_server.base_url, timeout=120) as http:
            audio = http.post(
                "/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "wav"}
            )
            assert audio.status_code == 200, audio.text
            result = http.post(
                "/audio/transcriptions",
                files={"file": ("speech.wav", audio.content)},
                data={"model": "whisper-1", "response_format": "json"},
            )
            assert result.status_code == 200, result.text
            return result.json()["text"]

    with ThreadPoolExecutor(4) as pool:
        heard = list(pool.map(one, SENTENCES))
    assert len(SENTENCES) >= 10
    score = wer(SENTENCES, heard)
    assert score < 0.15, list(zip(SENTENCES, heard, strict=True))


def _load_round(speech_server: SpeechServer, clips: list[Clip], round_no: int) -> list[float]:
    """8 transcriptions (verbose_json: the full 30 s Whisper decode) and 8 syntheses at once, with
    /health probed every 20 ms on its own connection until they are all done; the probe times."""
    files = [clips[i % len(clips)].path.read_bytes() for i in range(8)]
    texts = [f"Round {round_no}, request {i} is being spoken. It has two sentences." for i in range(8)]
    # The prober is its own process, so the 16 client threads here cannot delay its timing.
    prober = subprocess.Popen(
        [sys.executable, "-c", PROBE, speech_server.root_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert prober.stdout is not None and prober.stdout.readline().strip() == "ready"

    def transcribe(data: bytes) -> int:
        with httpx.Client(base_url=speech_server.base_url, timeout=180) as http:
            return http.post(
                "/audio/transcriptions",
                files={"file": ("a.wav", data)},
                data={"model": "whisper-1", "response_format": "verbose_json"},
            ).status_code

    def synthesize(text: str) -> int:
        with httpx.Client(base_url=speech_server.base_url, timeout=180) as http:
            return http.post(
                "/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": text, "response_format": "mp3"}
            ).status_code

    with ThreadPoolExecutor(16) as pool:
        jobs = [pool.submit(transcribe, f) for f in files] + [pool.submit(synthesize, t) for t in texts]
        statuses = [j.result() for j in jobs]
    out, _ = prober.communicate("stop\n", timeout=30)
    latencies = json.loads(out)
    assert statuses == [200] * 16
    assert len(latencies) >= 10, latencies
    return latencies


def test_health_stays_fast_under_speech_load(speech_server: SpeechServer, clips: list[Clip]) -> None:
    """The server's event loop must never stall behind inference. On a shared 2-core machine the
    scheduler can steal the CPU for a moment, so a round passes when 99% of its ~300 probes answer
    under 50 ms and none takes 250 ms; inference on the loop (0.3-1 s per decode) fails both rounds."""
    summaries = []
    for round_no in (1, 2):
        latencies = _load_round(speech_server, clips, round_no)
        worst = sorted(latencies)[-5:]
        summaries.append(
            f"round {round_no}: {len(latencies)} probes, median {statistics.median(latencies):.1f} ms, "
            f"worst {', '.join(f'{v:.0f}' for v in worst)} ms"
        )
        print(summaries[-1])
        slow = sum(v >= 50 for v in latencies)
        if slow <= len(latencies) // 100 and max(latencies) < 250:
            return
    raise AssertionError("; ".join(summaries))

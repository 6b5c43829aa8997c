"""TTS streaming latency: time to the first audio byte and real-time factor, over HTTP
(`POST /v1/audio/speech`, streamed body), OpenAI SSE (`stream_format: sse`) and the PRD's SSE
(`POST /v1/audio/tts/stream`). Bundled piper voice; each request's text is unique so the cache
never answers. Target on this 2-core CPU: first audio < 200 ms.

    .venv/bin/python benchmarks/tts_stream.py                 # starts a server, 20 runs per mode
    .venv/bin/python benchmarks/tts_stream.py -n 40 --url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import httpx
from speech_common import print_table, start_server, summary, write_report

TEXTS = [
    "Sure, I can help with that. Let me check the details for you.",
    "It is sunny and warm today. You might want to bring sunglasses.",
    "Your meeting starts at three o'clock. Do you want a reminder?",
    "I found two restaurants nearby. The first one has better reviews.",
    "That is a great question. The short answer is yes.",
    "The train leaves in twenty minutes. You still have time for coffee.",
    "Okay. I have added milk and eggs to your shopping list.",
    "Here is a quick summary. Sales went up by ten percent this quarter.",
]
TARGET_FIRST_AUDIO_MS = 200.0


def _text(i: int) -> str:
    return f"{TEXTS[i % len(TEXTS)]} This is reply number {i}."  # unique: the cache never answers


def run_http(http: httpx.Client, i: int, fmt: str) -> dict[str, float]:
    body = {"model": "tts-1", "voice": "alloy", "input": _text(i), "response_format": fmt}
    t0 = time.perf_counter()
    first = None
    size = 0
    with http.stream("POST", "/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            if chunk and first is None:
                first = time.perf_counter() - t0
            size += len(chunk)
    total = time.perf_counter() - t0
    out = {"first_audio_ms": (first or total) * 1000, "total_ms": total * 1000}
    if fmt == "pcm":
        out["rtf"] = total / (size / 48000)
    return out


def run_sse(http: httpx.Client, i: int, path: str, body: dict[str, Any], marker: bytes) -> dict[str, float]:
    t0 = time.perf_counter()
    first = None
    with http.stream("POST", path, json=body) as r:
        r.raise_for_status()
        for chunk in r.iter_raw():
            if first is None and marker in chunk:
                first = time.perf_counter() - t0
    total = time.perf_counter() - t0
    return {"first_audio_ms": (first or total) * 1000, "total_ms": total * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--runs", type=int, default=20, help="measured requests per mode (default 20)")
    parser.add_argument("--url", default=None, help="use a running server instead of starting one")
    parser.add_argument("--out", default=None, help="JSON report path (default benchmarks/results/tts_stream.json)")
    args = parser.parse_args()
    process = None
    root = args.url
    if root is None:
        process, root = start_server()
    try:
        results: dict[str, list[dict[str, float]]] = {}
        with httpx.Client(base_url=root, timeout=120) as http:
            for i in range(3):  # warm-up (not measured)
                run_http(http, 10_000 + i, "pcm")
            modes = {
                "http pcm": lambda i: run_http(http, i, "pcm"),
                "http mp3": lambda i: run_http(http, i, "mp3"),
                "sse speech.audio.delta (pcm)": lambda i: run_sse(
                    http,
                    i,
                    "/v1/audio/speech",
                    {
                        "model": "tts-1",
                        "voice": "alloy",
                        "input": _text(i),
                        "response_format": "pcm",
                        "stream_format": "sse",
                    },
                    b"speech.audio.delta",
                ),
                "sse audio_chunk (/v1/audio/tts/stream, pcm)": lambda i: run_sse(
                    http, i, "/v1/audio/tts/stream", {"text": _text(i), "format": "pcm"}, b"audio_chunk"
                ),
            }
            results = {name: [] for name in modes}
            for i in range(args.runs):  # round-robin: a change in machine load hits every mode alike
                for offset, (name, fn) in enumerate(modes.items()):
                    results[name].append(fn(offset * 1000 + i))
        rows: dict[str, dict[str, float]] = {}
        for name, runs in results.items():
            rows[f"{name}: first audio"] = summary([r["first_audio_ms"] for r in runs])
            rows[f"{name}: whole reply"] = summary([r["total_ms"] for r in runs])
        rtf = summary([r["rtf"] for r in results["http pcm"]], digits=3)
        print_table(f"TTS streaming latency ({args.runs} runs per mode, server {root})", rows)
        print(
            f"\n  real-time factor (http pcm, synthesis time / audio time): p50 {rtf['p50']:.3f}, p95 {rtf['p95']:.3f}"
        )
        first = rows["http pcm: first audio"]
        verdict = "met" if first["p95"] < TARGET_FIRST_AUDIO_MS else "NOT met"
        print(f"  target: first audio < {TARGET_FIRST_AUDIO_MS:.0f} ms (http pcm p95 {first['p95']:.0f} ms): {verdict}")
        path = write_report(
            "tts_stream",
            {"runs": args.runs, "server": root, "summary": rows, "rtf_http_pcm": rtf, "raw": results},
            args.out,
        )
        print(f"  report: {path}")
    finally:
        if process is not None:
            process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""WebRTC voice latency: one aiortc call to `POST /v1/rtc/webrtc/offer`, talking like a live microphone.

Starts the stub LLM (50 ms to first token, 5 ms per token) and `cozy serve` with the bundled models
(Silero VAD, Whisper tiny.en, piper) and `webrtc.silence_duration_ms` = --silence-ms, opens one call
and plays the bundled voice asking a question, --turns times, at real-time pace (20 ms Opus frames,
room tone between turns). Measured at the client, from the last loud sample sent:

- end of speech -> first reply frame received (the server sends nothing between replies)
- end of speech -> first audible reply frame (piper starts with a few quiet milliseconds)
- end of speech -> `pause_detected` on the data channel (the server's end-of-turn decision)
- barge-in (--barge-in): every other turn the caller talks over the reply after 600 ms; interrupting
  speech onset -> last reply frame heard
- the server's event-loop lag p99 during the run

Compare with `benchmarks/realtime_latency.py --engines local --sessions 1`, which measures the same
pipeline over the Realtime WebSocket from the end of the clip it sends (piper's clip ends with about
240 ms of near-silence after the last loud sample, which this script counts as speech ended).

    python benchmarks/webrtc_latency.py --turns 6
    python benchmarks/webrtc_latency.py --turns 6 --barge-in
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from benchmarks.realtime_latency import lag_p99, scrape_lag  # noqa: E402
from tests.support.procs import bench_server_env, start_cozy_serve, start_stub_llm  # noqa: E402
from tests.webrtc.rtc_client import Call, to_48k  # noqa: E402

KEY = "cozy-bench-webrtc-key-0123456789abcdef"
PHRASE = "What time is it in Paris right now?"


def config_dir(tmp: Path, silence_ms: int) -> Path:
    target = tmp / "config"
    shutil.copytree(ROOT / "config", target)
    path = target / "api.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["webrtc"].update(silence_duration_ms=silence_ms, preload=True)
    path.write_text(yaml.safe_dump(doc))
    (tmp / "personalities").symlink_to(ROOT / "personalities")
    return target


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def drive(root: str, turns: int, barge_in: bool) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=60) as http:
        r = await http.post(
            f"{root}/v1/audio/speech",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": "tts-1", "input": PHRASE, "voice": "joe", "response_format": "pcm"},
        )
        r.raise_for_status()
    clip = to_48k(r.content)
    call = Call(root, KEY)
    answer = await call.offer()
    answer.raise_for_status()
    await call.connected()
    await asyncio.sleep(1.0)
    rows: list[dict[str, Any]] = []
    try:
        for turn in range(turns):
            call.mic.say(clip)
            await call.mic.done.wait()
            end = call.mic.speech_ended_at or time.time()
            row: dict[str, Any] = {"turn": turn}
            try:
                loud = await call.speaker.wait_loud(end, timeout=30)
            except TimeoutError:
                rows.append({**row, "lost": True})
                continue
            first = next(t for t, _ in call.speaker.frames if t > end)
            paused = call.message_time("pause_detected", end - 2.0)
            row.update(
                first_frame_ms=(first - end) * 1000,
                first_audible_ms=(loud - end) * 1000,
                pause_detected_ms=None if paused is None else (paused - end) * 1000,
            )
            if barge_in and turn % 2 == 0:
                await asyncio.sleep(0.6)
                call.mic.say(clip)  # talk over the reply
                await call.mic.done.wait()
                onset, stop = call.mic.speech_started_at or 0.0, call.mic.speech_ended_at or 0.0
                heard = [t for t in call.speaker.loud(loud) if onset <= t <= stop]
                row["barge_in_stop_ms"] = ((heard[-1] - onset) * 1000) if heard else 0.0
                loud = await call.speaker.wait_loud(stop, timeout=30)  # the answer to the interruption
            await call.speaker.wait_quiet(loud, quiet_s=1.5, timeout=60)  # the reply has finished
            rows.append(row)
            print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    finally:
        await call.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=6)
    ap.add_argument("--silence-ms", type=int, default=300, help="webrtc.silence_duration_ms (server VAD)")
    ap.add_argument("--barge-in", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/webrtc_latency.json"))
    args = ap.parse_args(argv)
    stub = start_stub_llm(ttft_ms=50, token_ms=5)
    tmp = Path(tempfile.mkdtemp(prefix="cozy-webrtc-bench-"))
    server = None
    try:
        cfg = config_dir(tmp, args.silence_ms)
        env = bench_server_env(stub.base_url, KEY, tmp / "data")
        server, root = start_cozy_serve(env, config_dir=cfg, timeout=120)
        lag0 = scrape_lag(root)
        rows = asyncio.run(drive(root, args.turns, args.barge_in))
        loop_lag = lag_p99(lag0, scrape_lag(root))
    finally:
        if server is not None:
            server.stop()
        stub.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    def col(key: str) -> list[float]:
        return [r[key] for r in rows if r.get(key) is not None]

    summary: dict[str, Any] = {
        "turns": args.turns,
        "silence_ms": args.silence_ms,
        "lost": sum("lost" in r for r in rows),
    }
    for key in ("first_frame_ms", "first_audible_ms", "pause_detected_ms", "barge_in_stop_ms"):
        values = col(key)
        summary[key] = {
            "p50": round(statistics.median(values), 1) if values else None,
            "p95": pct(values, 0.95),
            "n": len(values),
        }
    summary["loop_lag_p99_ms"] = loop_lag
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    return 1 if summary["lost"] else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())

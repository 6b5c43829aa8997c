"""Soak: K realtime sessions talking for T minutes; does the server's memory or event loop drift?

Each session is the realtime latency benchmark's live microphone (benchmarks/realtime_latency.py:
server VAD, the piper-spoken phrase at real-time pace, silence between turns, a barge-in every
other turn), but it keeps taking turns until the time is up. The engines are stubs (STT/TTS through
the real remote providers onto the stub upstream, the stub LLM): the server itself is what soaks.

Every --sample-s seconds it records the server's RSS and the event-loop lag histogram
(`cozy_event_loop_lag_seconds` on /metrics). At the end it prints (and writes as JSON):

- RSS over time, and its least-squares slope after --warmup-s, in MB per session-hour
  (MB/s x 3600 / K): what a long-lived process grows per session it serves;
- event-loop lag p99 over the run and the worst per-sample p99 (-1: beyond the largest bucket);
- turns sent, replies received, turns lost (no `response.done` within 30 s) and sessions that
  failed (a disconnect or an error counts its unfinished turns as lost).

    python benchmarks/soak.py --sessions 5 --minutes 1          # a quick check
    python benchmarks/soak.py --sessions 50 --minutes 10        # the target: slope < 1 MB/session-h, 0 lost

Exit status 1 when a turn was lost or the slope is over --max-slope.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.realtime_latency import (  # noqa: E402
    KEY,
    Session,
    append_messages,
    config_dir,
    cpu_s,
    lag_p99,
    rss_mb,
    scrape_lag,
    speech_clip,
)
from tests.support.procs import bench_server_env, start_cozy_serve, start_stub_llm  # noqa: E402

GRACE_S = 45.0  # after the deadline: time for the turns in flight to finish


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope (y per x) of `points`; None with fewer than 3."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


def _finite(ms: float | None) -> float | None:
    """A p99 beyond the histogram's largest bucket is +inf, which JSON cannot hold: say -1."""
    return -1.0 if ms is not None and math.isinf(ms) else ms


async def sample(
    root: str, pid: int, every_s: float, stop: asyncio.Event, out: list[dict[str, Any]], t0: float
) -> None:
    """Every `every_s`: RSS (MB) and the loop-lag p99 of the interval (ms), until `stop`."""
    loop = asyncio.get_running_loop()
    prev = await loop.run_in_executor(None, scrape_lag, root)
    while True:
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass
        lag = await loop.run_in_executor(None, scrape_lag, root)
        out.append(
            {
                "t_s": round(time.perf_counter() - t0, 1),
                "rss_mb": round(rss_mb(pid), 1),
                "lag_p99_ms": _finite(lag_p99(prev, lag)),
            }
        )
        prev = lag


async def soak(
    root: str, pid: int, clip: bytes, args: argparse.Namespace
) -> tuple[list[Session], list[dict[str, Any]], float, int]:
    url = root.replace("http", "ws", 1) + "/v1/realtime?model=stub-model"
    messages = append_messages(clip, args.frame_ms)
    t0 = time.perf_counter()
    until = t0 + args.minutes * 60
    sessions = [
        Session(url, messages, args.frame_ms, 10**9, args.silence_ms, until=until) for _ in range(args.sessions)
    ]
    samples: list[dict[str, Any]] = [{"t_s": 0.0, "rss_mb": round(rss_mb(pid), 1), "lag_p99_ms": None}]
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample(root, pid, args.sample_s, stop, samples, t0))
    tasks = []
    for s in sessions:  # stagger starts so turns do not all line up
        tasks.append(asyncio.create_task(s.run()))
        await asyncio.sleep(args.stagger_ms / 1000)
    _, pending = await asyncio.wait(tasks, timeout=max(1.0, until + GRACE_S - time.perf_counter()))
    for task in pending:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    stop.set()
    await sampler
    failed = 0
    for s, res in zip(sessions, results, strict=True):
        if isinstance(res, BaseException):
            failed += 1
            print(f"session failed: {res!r}", file=sys.stderr)
            s.lost += 1  # the turn in flight when it failed
    return sessions, samples, time.perf_counter() - t0, failed


def summarize(sessions: list[Session], samples: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    replies = sum(len(s.results) for s in sessions)
    lost = sum(s.lost for s in sessions)
    after = [(p["t_s"], p["rss_mb"]) for p in samples if p["t_s"] >= args.warmup_s]
    per_s = slope(after)
    lags = [p["lag_p99_ms"] for p in samples if p["lag_p99_ms"] is not None]
    return {
        "sessions": args.sessions,
        "minutes": args.minutes,
        "turns_sent": replies + lost,
        "replies_received": replies,
        "turns_lost": lost,
        "barge_ins_cut": sum(1 for s in sessions for r in s.results if r["barge"] and r.get("status") == "cancelled"),
        "rss_mb_start": samples[0]["rss_mb"],
        "rss_mb_end": samples[-1]["rss_mb"],
        "rss_mb_max": max(p["rss_mb"] for p in samples),
        "warmup_s": args.warmup_s,
        "rss_samples_after_warmup": len(after),
        "rss_slope_mb_per_hour": None if per_s is None else round(per_s * 3600, 2),
        "rss_slope_mb_per_session_hour": None if per_s is None else round(per_s * 3600 / args.sessions, 3),
        "loop_lag_p99_ms_worst_sample": (-1.0 if -1.0 in lags else max(lags)) if lags else None,
        "rss_series": samples,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--sample-s", type=float, default=10.0, help="RSS and loop-lag sampling interval")
    ap.add_argument("--warmup-s", type=float, default=None, help="ignored by the slope (default: 20%% of the run)")
    ap.add_argument("--max-slope", type=float, default=1.0, help="MB per session-hour allowed after warm-up")
    ap.add_argument("--frame-ms", type=int, default=40)
    ap.add_argument("--silence-ms", type=int, default=300, help="server_vad silence_duration_ms")
    ap.add_argument("--stagger-ms", type=int, default=97)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/soak.json"))
    args = ap.parse_args(argv)
    if args.warmup_s is None:
        args.warmup_s = round(args.minutes * 60 * 0.2, 1)

    clip = speech_clip()
    stub = start_stub_llm(ttft_ms=0, token_ms=0)
    tmp = Path(tempfile.mkdtemp(prefix="cozy-soak-"))
    server = None
    try:
        env = bench_server_env(stub.base_url, KEY, tmp / "data")
        server, root = start_cozy_serve(env, config_dir=config_dir("stub", stub.base_url, tmp), timeout=120)
        lag0 = scrape_lag(root)
        cpu0 = cpu_s(server.pid)
        sessions, samples, wall, failed = asyncio.run(soak(root, server.pid, clip, args))
        summary = summarize(sessions, samples, args)
        summary.update(
            sessions_failed=failed,
            wall_s=round(wall, 1),
            loop_lag_p99_ms=_finite(lag_p99(lag0, scrape_lag(root))),
            server_cpu_cores=round((cpu_s(server.pid) - cpu0) / wall, 2),
            server_alive=httpx.get(f"{root}/health", timeout=10).status_code == 200,
            machine={"cpus": os.cpu_count(), "python": platform.python_version()},
        )
    finally:
        if server is not None:
            server.stop()
        stub.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    series = summary.pop("rss_series")
    print("  t_s   rss_mb  lag_p99_ms")
    for p in series:
        print(f"{p['t_s']:6.0f} {p['rss_mb']:8.1f}  {p['lag_p99_ms']}")
    print(json.dumps(summary, indent=2))
    summary["rss_series"] = series
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    bad_slope = (summary["rss_slope_mb_per_session_hour"] or 0) > args.max_slope
    return 1 if summary["turns_lost"] or bad_slope or not summary["server_alive"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Realtime voice latency: K concurrent sessions talking like live microphones.

Each session connects to `WS /v1/realtime`, enables server VAD and sends speech synthesized with
the bundled piper voice at real-time pace (frames of --frame-ms, silence between turns, like a
microphone that never stops), and measures from the client side:

- end of speech -> first reply audio (last speech frame sent -> first `response.output_audio.delta`)
- speech_stopped -> first audio delta (server's end-of-turn decision -> first audio)
- barge-in: every other turn the user talks over the reply; interrupting speech onset -> last reply
  audio delta received, and `speech_started` -> last audio delta
- replies lost (a turn that never got `response.done`), event-loop lag p99 (from the server's
  `cozy_event_loop_lag_seconds` histogram) and RSS per session.

`--engines stub`: STT and TTS are instant stand-ins (the stub upstream's /audio endpoints, through
the real remote providers) and the LLM is the stub: measures the server itself.
`--engines local`: bundled Whisper tiny.en, piper and Silero, with the stub LLM.
`--turn-detection semantic_vad` (with `--eagerness`): Smart Turn decides at each pause instead of
the silence window; `stop_wait_ms` (input audio between the end of speech and `speech_stopped`)
and `turns_waited_to_max` show how often it waited for the eagerness maximum.

    python benchmarks/realtime_latency.py --engines stub --sessions 50 --turns 4
    python benchmarks/realtime_latency.py --engines local --sessions 1 --turns 6
    python benchmarks/realtime_latency.py --engines local --sessions 1 --turns 6 --turn-detection semantic_vad
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402
import websockets  # noqa: E402
import yaml  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from benchmarks import cpu_cap  # noqa: E402
from tests.support.procs import bench_server_env, start_cozy_serve, start_stub_llm  # noqa: E402

KEY = "cozy-bench-realtime-key-0123456789abcdef"
PHRASE = "What time is it in Paris right now?"
EAGERNESS_MAX_MS = {"low": 8000, "medium": 4000, "high": 2000, "auto": 4000}  # GA's semantic_vad caps


def turn_detection(kind: str, silence_ms: int, eagerness: str) -> dict[str, Any]:
    if kind == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": eagerness}
    return {"type": "server_vad", "silence_duration_ms": silence_ms, "prefix_padding_ms": 300}


def speech_clip() -> bytes:
    """The phrase spoken by the bundled piper voice, as PCM16 24 kHz mono."""
    from cozy_media.audio.resample import resample
    from cozy_media.tts.piper import PiperTTS

    async def make() -> bytes:
        tts = PiperTTS()
        await tts.initialize()
        audio = await tts.synthesize(PHRASE, voice="joe")
        return resample(audio.samples, audio.sample_rate, 24000).astype("<i2").tobytes()

    return asyncio.run(make())


def config_dir(engines: str, stub_url: str, tmp: Path, preemptive: bool = True) -> Path:
    target = tmp / "config"
    shutil.copytree(ROOT / "config", target)
    if engines == "stub":
        path = target / "engines.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["stt"].update(provider="openai", options={"base_url": stub_url, "model": "whisper-1"})
        doc["tts"].update(
            provider="openai",
            options={"base_url": stub_url, "model": "tts-1", "voices": ["alloy"]},
            default_voice="alloy",
            voice_aliases={"joe": "alloy"},
        )
        path.write_text(yaml.safe_dump(doc))
    shutil.copytree(ROOT / "personalities", tmp / "personalities")
    if not preemptive:  # the default personality's reply waits for the end of speech to call the model
        path = tmp / "personalities" / "assistant.yaml"
        doc = yaml.safe_load(path.read_text())
        doc.setdefault("voice", {})["preemptive_generation"] = False
        path.write_text(yaml.safe_dump(doc))
    return target


def last_voiced_frame(clip: bytes, frame_ms: int, floor_db: float = -40.0) -> int:
    """Index of the clip's last frame with speech in it (RMS within `floor_db` of the loudest frame).

    Why: piper ends its audio with ~0.2 s of near silence; "end of speech" is the last speech sample
    sent, not the clip's end (measured from the clip's end, every latency read ~0.2 s short)."""
    pcm = np.frombuffer(clip, dtype="<i2").astype(np.float32)
    n = 24 * frame_ms
    frames = pcm[: len(pcm) // n * n].reshape(-1, n)
    rms = np.sqrt((frames**2).mean(axis=1))
    voiced = np.nonzero(rms >= rms.max() * 10 ** (floor_db / 20))[0]
    return int(voiced[-1]) if len(voiced) else len(rms) - 1


def append_messages(clip: bytes, frame_ms: int) -> tuple[str, list[str]]:
    """The `input_audio_buffer.append` messages of one silent frame and of the clip, encoded once
    for every session: the load generator shares the server's two cores, so it must stay light."""
    frame = 48 * frame_ms  # bytes of PCM16 24 kHz

    def message(piece: bytes) -> str:
        return orjson.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}).decode()

    return message(b"\0" * frame), [message(clip[i : i + frame]) for i in range(0, len(clip), frame)]


class Session:
    def __init__(
        self,
        url: str,
        clip: tuple[str, list[str]],
        frame_ms: int,
        turns: int,
        silence_ms: int,
        until: float | None = None,
        vad: dict[str, Any] | None = None,
        voiced_end: int | None = None,
    ) -> None:
        self.url, self.turns = url, turns
        self.vad = vad or turn_detection("server_vad", silence_ms, "auto")
        self.frame_ms = frame_ms
        self.sent_ms = 0.0  # input audio sent: the clock of the server's VAD events
        self.until = until  # a perf_counter() time: no new turn starts after it (benchmarks/soak.py)
        self.silence, self.clip = clip
        # the clip's last frame with speech (its end if not given): where end of speech is measured
        self.voiced_end = len(self.clip) - 1 if voiced_end is None else voiced_end
        self.frame_s = frame_ms / 1000
        self.silence_ms = silence_ms
        self.results: list[dict[str, Any]] = []
        self.lost = 0
        self.speak = asyncio.Event()  # set: the microphone plays the clip next
        self.spoke = asyncio.Event()  # set: the clip has been sent
        self.speech_end = self.clip_end = self.onset = 0.0
        self.connected_s = 0.0  # how long the socket was open: the session-seconds the server served

    async def run(self) -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with websockets.connect(self.url, additional_headers=headers, max_size=None) as ws:
            opened = time.perf_counter()
            try:
                await self._talk(ws)
            finally:
                self.connected_s = time.perf_counter() - opened

    async def _talk(self, ws: Any) -> None:
        self.ws = ws
        self.events: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        reader = asyncio.create_task(self._read())
        vad = self.vad
        await ws.send(
            json.dumps(
                {
                    "type": "session.update",
                    "session": {  # transcription on: its `completed` event marks the final decode
                        "type": "realtime",
                        "audio": {"input": {"turn_detection": vad, "transcription": {"model": "whisper-1"}}},
                    },
                }
            )
        )
        self.mic = asyncio.create_task(self._microphone())
        try:
            for turn in range(self.turns):
                if self.until is not None and time.perf_counter() >= self.until:
                    break
                await self._turn(barge=turn % 2 == 1)
        finally:
            self.mic.cancel()
            reader.cancel()

    async def _read(self) -> None:
        async for raw in self.ws:
            self.events.put_nowait((time.perf_counter(), orjson.loads(raw)))

    async def _microphone(self) -> None:
        """A live microphone: silence, or the clip when `self.speak` is set; paced by the clock."""
        next_at = time.perf_counter()
        while True:
            data = [self.silence]
            if self.speak.is_set():
                data = self.clip
                self.speak.clear()
            for i, message in enumerate(data):
                if len(data) > 1 and i == 0:
                    self.onset = time.perf_counter()
                await self.ws.send(message)
                if len(data) > 1 and i == self.voiced_end:
                    self.speech_end = time.perf_counter()  # the last speech sample has been sent
                self.sent_ms += self.frame_ms
                next_at += self.frame_s
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            if len(data) > 1:
                self.clip_end = time.perf_counter()
                self.spoke.set()

    async def _next(self, timeout: float = 30.0) -> tuple[float, dict[str, Any]]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def _turn(self, barge: bool) -> None:
        while not self.events.empty():
            self.events.get_nowait()
        self.spoke.clear()
        self.speak.set()
        r: dict[str, Any] = {"barge": barge}
        try:
            stopped = first_audio = last_audio = started2 = speech_end = clip_end = transcript = created = None
            barged = False
            while True:
                t, ev = await self._next()
                kind = ev["type"]
                if kind == "input_audio_buffer.speech_stopped" and stopped is None:
                    stopped = t
                    speech_end, clip_end = self.speech_end, self.clip_end
                    r["stop_wait_ms"] = round(self.sent_ms - ev["audio_end_ms"], 1)
                elif kind == "conversation.item.input_audio_transcription.completed" and stopped and not transcript:
                    transcript = t
                elif kind == "response.created" and stopped is not None and created is None:
                    created = t
                elif kind == "response.output_audio.delta":
                    first_audio = first_audio or t
                    last_audio = t
                    if barge and not barged and t - first_audio > 0.6:
                        barged = True
                        self.spoke.clear()
                        self.speak.set()  # talk over the reply
                elif kind == "input_audio_buffer.speech_started" and barged and started2 is None:
                    started2 = t
                elif kind == "response.done":
                    await self.spoke.wait()
                    r["status"] = ev["response"]["status"]
                    break
            r["eos_to_first_audio_ms"] = _ms(first_audio, speech_end)
            r["clip_end_to_first_audio_ms"] = _ms(first_audio, clip_end) if clip_end and clip_end > speech_end else None
            r["stopped_to_first_audio_ms"] = _ms(first_audio, stopped)
            # Where the time goes, on the client's clock (each from the previous mark):
            r["eos_to_stopped_ms"] = _ms(stopped, speech_end)  # VAD silence window + detection
            r["stopped_to_transcript_ms"] = _ms(transcript, stopped)  # the final decode left
            r["stopped_to_created_ms"] = _ms(created, stopped)  # the response starts
            r["created_to_first_audio_ms"] = _ms(first_audio, created)  # LLM first text + first TTS chunk
            if barged:
                r["onset_to_last_audio_ms"] = _ms(last_audio, self.onset)
                r["started_to_last_audio_ms"] = _ms(last_audio, started2)
                # The interrupting speech is itself a user turn: let it finish and be answered.
                while True:
                    _, ev = await self._next()
                    if ev["type"] == "response.done":
                        break
            self.results.append(r)
        except TimeoutError:
            self.lost += 1


def _ms(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((a - b) * 1000, 1)


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))], 1)


def lag_p99(before: dict[float, float], after: dict[float, float]) -> float | None:
    """p99 (ms, bucket upper bound) of the loop-lag histogram between two scrapes."""
    deltas = {le: after.get(le, 0) - before.get(le, 0) for le in after}
    total = deltas.get(float("inf"), 0)
    if total <= 0:
        return None
    for le in sorted(deltas):
        if deltas[le] >= 0.99 * total:
            return round(le * 1000, 1)
    return None


def metrics_texts(root: str, workers: int = 1) -> list[str]:
    """`/metrics` of every worker: with `--workers N` each worker has its own registry and the
    kernel picks one per connection, so scrape with fresh connections until all N have answered."""
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while len(seen) < workers and time.monotonic() < deadline:
        r = httpx.get(f"{root}/metrics", timeout=10)
        seen[r.headers.get("x-cozy-worker", "")] = r.text
    return list(seen.values())


POOL_WAIT = "cozy_worker_pool_wait_seconds"


def _families(texts: list[str], name: str) -> Iterator[Any]:
    for text in texts:
        for fam in text_string_to_metric_families(text):
            if fam.name == name:
                yield fam


def scrape_lag(texts: list[str]) -> dict[float, float]:
    """The loop-lag histogram's buckets, summed over the workers."""
    out: dict[float, float] = {}
    for fam in _families(texts, "cozy_event_loop_lag_seconds"):
        for s in fam.samples:
            if s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                out[le] = out.get(le, 0.0) + s.value
    return out


def scrape_sums(
    texts: list[str], family: str = "cozy_turn_stage_seconds", label: str = "stage"
) -> dict[str, tuple[float, float]]:
    """(sum s, count) per `label` of a histogram: per turn stage (where the server's time goes), or
    per priority of the inference pool's queue wait (`cozy_worker_pool_wait_seconds`)."""
    out: dict[str, list[float]] = {}
    for fam in _families(texts, family):
        for s in fam.samples:
            slot = out.setdefault(s.labels[label], [0.0, 0.0])
            if s.name.endswith("_sum"):
                slot[0] += s.value
            elif s.name.endswith("_count"):
                slot[1] += s.value
    return {k: (v[0], v[1]) for k, v in out.items()}


def mean_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], counts: bool = False
) -> dict[str, Any]:
    """Mean ms per label over the run (with `counts`: [mean ms, observations])."""
    out: dict[str, Any] = {}
    for k, (total, n) in after.items():
        t0, n0 = before.get(k, (0.0, 0.0))
        if n - n0 > 0:
            mean = round((total - t0) / (n - n0) * 1000, 1)
            out[k] = [mean, int(n - n0)] if counts else mean
    return out


def scrape_vad_batches(texts: list[str]) -> tuple[float, float]:
    """(chunks, model calls) of the server's batched VAD so far."""
    got = {"sum": 0.0, "count": 0.0}
    for fam in _families(texts, "cozy_vad_batch_rows"):
        for s in fam.samples:
            for key in got:
                if s.name.endswith("_" + key):
                    got[key] += s.value
    return got["sum"], got["count"]


def scrape_preemptive(texts: list[str]) -> dict[str, int]:
    """Replies started at a pause so far, by outcome: used by the turn, or discarded."""
    got: dict[str, int] = {}
    for fam in _families(texts, "cozy_preemptive_generations"):
        for s in fam.samples:
            if s.name.endswith("_total"):
                got[s.labels["outcome"]] = got.get(s.labels["outcome"], 0) + int(s.value)
    return got


def rss_mb(pid: int) -> float:
    total = 0
    for p in [pid, *[int(c) for c in _children(pid)]]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_s(pid: int) -> float:
    """CPU seconds of the server: process `pid` and its worker processes (`cozy serve --workers`),
    not the embedded PostgreSQL it started (its processes are named `postgres`)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            if p != pid and Path(f"/proc/{p}/comm").read_text().strip() == "postgres":
                continue
            total += cpu_s(p)
        except (FileNotFoundError, ProcessLookupError):
            continue
        todo.extend(int(c) for c in _children(p))
    return total


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []


async def drive(url: str, clip: bytes, args: argparse.Namespace) -> list[Session]:
    messages = append_messages(clip, args.frame_ms)
    voiced_end = last_voiced_frame(clip, args.frame_ms)
    vad = turn_detection(args.turn_detection, args.silence_ms, args.eagerness)
    sessions = [
        Session(url, messages, args.frame_ms, args.turns, args.silence_ms, vad=vad, voiced_end=voiced_end)
        for _ in range(args.sessions)
    ]
    tasks = []
    for s in sessions:  # stagger starts so turns do not all line up
        tasks.append(asyncio.create_task(s.run()))
        await asyncio.sleep(args.stagger_ms / 1000)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for s, res in zip(sessions, results, strict=True):
        if isinstance(res, BaseException):
            print(f"session failed: {res!r}", file=sys.stderr)
            s.lost += args.turns - len(s.results)
    return sessions


def summarize(sessions: list[Session]) -> dict[str, Any]:
    rs = [r for s in sessions for r in s.results]

    # A barge-in counts only when it cut the reply (`cancelled`): one that began after the reply's
    # last audio had already gone out measures nothing.
    cut = [r for r in rs if r["barge"] and r.get("status") == "cancelled"]
    out: dict[str, Any] = {
        "turns": len(rs),
        "replies_lost": sum(s.lost for s in sessions),
        "barge_ins_after_reply_ended": sum(1 for r in rs if r["barge"] and r.get("status") != "cancelled"),
    }
    for key, rows in (
        ("eos_to_first_audio_ms", rs),
        ("clip_end_to_first_audio_ms", rs),
        ("stopped_to_first_audio_ms", rs),
        ("eos_to_stopped_ms", rs),
        ("stopped_to_transcript_ms", rs),
        ("stopped_to_created_ms", rs),
        ("created_to_first_audio_ms", rs),
        ("stop_wait_ms", rs),
        ("onset_to_last_audio_ms", cut),
        ("started_to_last_audio_ms", cut),
    ):
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = {"p50": pct(values, 50), "p95": pct(values, 95), "n": len(values)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", choices=["stub", "local"], default="stub")
    ap.add_argument("--sessions", type=int, default=1)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--frame-ms", type=int, default=40)
    ap.add_argument("--silence-ms", type=int, default=300, help="server_vad silence_duration_ms")
    ap.add_argument("--turn-detection", choices=["server_vad", "semantic_vad"], default="server_vad")
    ap.add_argument("--eagerness", choices=sorted(EAGERNESS_MAX_MS), default="auto", help="semantic_vad eagerness")
    ap.add_argument(
        "--interruption", choices=["cancel", "pause"], default="cancel", help="barge-in mode (?cozy_interruption=)"
    )
    ap.add_argument(
        "--preemptive", choices=["on", "off"], default="on", help="voice.preemptive_generation of the personality"
    )
    ap.add_argument("--stagger-ms", type=int, default=97)
    ap.add_argument("--workers", type=int, default=1, help="worker processes of the server (cozy serve --workers)")
    ap.add_argument(
        "--cpu-per-worker",
        type=float,
        default=None,
        help="hold each worker process to this many cores (cgroup v1 cpu quota; see cpu_cap.py)",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/realtime_latency.json"))
    args = ap.parse_args(argv)

    clip = speech_clip()
    # stub engines: an instant LLM too (the server itself is measured); local: a fast real-ish LLM.
    stub = start_stub_llm(ttft_ms=0, token_ms=0) if args.engines == "stub" else start_stub_llm(ttft_ms=50, token_ms=5)
    tmp = Path(tempfile.mkdtemp(prefix="cozy-rt-bench-"))
    server = None
    groups: list[Path] = []
    try:
        cfg = config_dir(args.engines, stub.base_url, tmp, preemptive=args.preemptive == "on")
        env = bench_server_env(stub.base_url, KEY, tmp / "data")
        workers = [] if args.workers == 1 else ["--workers", str(args.workers)]  # older servers lack the flag
        server, root = start_cozy_serve(env, config_dir=cfg, timeout=120, extra_args=workers)
        if args.cpu_per_worker:
            groups = cpu_cap.cap(cpu_cap.worker_pids(server.pid, args.workers), args.cpu_per_worker)
        rss0 = rss_mb(server.pid)
        texts0 = metrics_texts(root, args.workers)
        lag0, vad0, stages0 = scrape_lag(texts0), scrape_vad_batches(texts0), scrape_sums(texts0)
        waits0 = scrape_sums(texts0, POOL_WAIT, "priority")
        primed0 = scrape_preemptive(texts0)
        cpu0 = server_cpu_s(server.pid), cpu_s(stub.process.pid), time.process_time()
        load0 = os.getloadavg()
        started = time.perf_counter()
        url = root.replace("http", "ws", 1) + f"/v1/realtime?model=stub-model&cozy_interruption={args.interruption}"
        sessions = asyncio.run(drive(url, clip, args))
        elapsed = time.perf_counter() - started
        cpu1 = server_cpu_s(server.pid), cpu_s(stub.process.pid), time.process_time()
        session_s = sum(s.connected_s for s in sessions)
        rss1 = rss_mb(server.pid)
        summary = summarize(sessions)
        if args.turn_detection == "semantic_vad":  # a stop this late came from the cap, not from Smart Turn
            cap = EAGERNESS_MAX_MS[args.eagerness]
            waits = [r["stop_wait_ms"] for s in sessions for r in s.results if r.get("stop_wait_ms") is not None]
            summary["turns_waited_to_max"] = sum(1 for w in waits if w >= cap - 2 * args.frame_ms)
        texts1 = metrics_texts(root, args.workers)
        vad1, stages1 = scrape_vad_batches(texts1), scrape_sums(texts1)
        calls = vad1[1] - vad0[1]
        summary.update(
            engines=args.engines,
            sessions=args.sessions,
            workers=args.workers,
            turns_per_session=args.turns,
            frame_ms=args.frame_ms,
            silence_ms=args.silence_ms,
            preemptive=args.preemptive,
            turn_detection=turn_detection(args.turn_detection, args.silence_ms, args.eagerness),
            wall_s=round(elapsed, 1),
            loop_lag_p99_ms=lag_p99(lag0, scrape_lag(texts1)),
            rss_mb_before=round(rss0, 1),
            rss_mb_after=round(rss1, 1),
            rss_mb_per_session=round((rss1 - rss0) / max(1, args.sessions), 2),
            # cores busy on average over the run: the server alone, and the load (client + stubs)
            cpu_cores={
                name: round((b - a) / elapsed, 2)
                for name, a, b in zip(("server", "stub", "client"), cpu0, cpu1, strict=True)
            },
            # the server's CPU per second of a live session (ms): its CPU over the run / session-seconds
            server_cpu_ms_per_session_s=round((cpu1[0] - cpu0[0]) * 1000 / session_s, 2) if session_s else None,
            preemptive_outcomes={k: v - primed0.get(k, 0) for k, v in scrape_preemptive(texts1).items()},
            vad_chunks_per_model_call=round((vad1[0] - vad0[0]) / calls, 1) if calls else None,
            server_stage_mean_ms=mean_ms(stages0, stages1),
            # how long inference jobs queued before a pool thread took them (mean ms, jobs), by priority
            pool_wait_mean_ms=mean_ms(waits0, scrape_sums(texts1, POOL_WAIT, "priority"), counts=True),
            cpu_per_worker=args.cpu_per_worker,
            throttled_s=round(cpu_cap.throttled_s(groups), 2) if groups else None,
            machine={
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "loadavg_before": [round(x, 2) for x in load0],
                "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            },
        )
    finally:
        if server is not None:
            server.stop()
        cpu_cap.release(groups)
        stub.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(summary, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    return 1 if summary["replies_lost"] else 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())

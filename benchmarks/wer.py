"""Word error rate of the live transcripts against the same model offline.

A held-out set of utterances (benchmarks/wer_text.py: 32 sentences, 4 per voice group) spoken by
espeak-ng (en-us, en-gb and variants, speeds 140–200 words/min) and by the bundled piper voice
(length_scale 0.9–1.2), all as PCM16 24 kHz (what a Realtime client sends). Two transcripts of
each clip, normalized the same way (lowercase, numbers spelled out, punctuation dropped):

- offline: the bundled tiny.en through faster-whisper's own `transcribe` on the whole clip, beam 5
  (plus `--variants`: beam 1, float32), the clip resampled to 16 kHz with the server's resampler;
- live: a real `cozy serve`, one `WS /v1/realtime` session with server_vad, the clips sent as
  20 ms frames at real-time pace (`--pace 2` sends twice as fast) with silence between them,
  transcribed as `conversation.item.input_audio_transcription.completed` (joined when VAD split
  an utterance); `create_response: false`, so no LLM is involved.

Prints both WERs (overall and per voice group) and the difference; the target is
live ≤ offline beam 5 + 0.02. Results: benchmarks/results/wer.json.

    python benchmarks/wer.py
    python benchmarks/wer.py --variants --cozy-url http://127.0.0.1:8000
    python benchmarks/wer.py --env COZY_STT_BEAM_SIZE=1      # the live pipeline with beam-1 finals
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import websockets  # noqa: E402
from speech_common import start_server, write_report  # noqa: E402
from wer_text import SENTENCES, normalize, wer  # noqa: E402

RATE = 24000  # the Realtime API's PCM16 rate
CACHE_VERSION = 1  # bump when GROUPS or SENTENCES change
# (group, engine, voice, speed): espeak-ng words per minute, or piper length_scale.
GROUPS = (
    ("espeak en-us s160", "espeak", "en-us", 160),
    ("espeak en-us+f3 s140", "espeak", "en-us+f3", 140),
    ("espeak en-gb s180", "espeak", "en-gb", 180),
    ("espeak en-gb+m3 s200", "espeak", "en-gb+m3", 200),
    ("espeak en-us+m3 s170", "espeak", "en-us+m3", 170),
    ("piper joe ls0.9", "piper", "joe", 0.9),
    ("piper joe ls1.05", "piper", "joe", 1.05),
    ("piper joe ls1.2", "piper", "joe", 1.2),
)


@dataclass
class Clip:
    group: str
    text: str
    pcm: np.ndarray  # int16 24 kHz
    offline: dict[str, str] = field(default_factory=dict)
    live: str | None = None


def _espeak(text: str, voice: str, wpm: float) -> np.ndarray:
    from cozy_media.audio.resample import resample

    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(int(wpm)), "--stdout", text], check=True, capture_output=True
    ).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate, data = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return resample(data, rate, RATE).astype(np.int16)


async def _piper(texts: list[str], length_scale: float) -> list[np.ndarray]:
    from cozy_media.audio.resample import resample
    from cozy_media.tts.piper import PiperOptions, PiperTTS, PiperVoiceOptions

    tts = PiperTTS(PiperOptions(voices={"joe": PiperVoiceOptions(length_scale=length_scale)}))
    await tts.initialize()
    out = []
    for text in texts:
        audio = await tts.synthesize(text, voice="joe")
        out.append(resample(audio.samples, audio.sample_rate, RATE).astype(np.int16))
    return out


def make_clips(cache: Path | None = None) -> list[Clip]:
    """The clips, from `cache` when it holds them: piper samples noise, so a fresh synthesis
    differs slightly every run and runs would not compare the same audio."""
    per = len(SENTENCES) // len(GROUPS)
    labels = [(name, text) for g, (name, *_) in enumerate(GROUPS) for text in SENTENCES[g * per : (g + 1) * per]]
    if cache is not None and cache.is_file():
        with np.load(cache) as saved:
            if int(saved["version"]) == CACHE_VERSION and len(saved.files) == len(labels) + 1:
                return [Clip(name, text, saved[f"c{i}"]) for i, (name, text) in enumerate(labels)]
    clips: list[Clip] = []
    for g, (name, engine, voice, speed) in enumerate(GROUPS):
        texts = list(SENTENCES[g * per : (g + 1) * per])
        if engine == "espeak":
            pcms = [_espeak(t, voice, speed) for t in texts]
        else:
            pcms = asyncio.run(_piper(texts, float(speed)))
        clips += [Clip(name, t, p) for t, p in zip(texts, pcms, strict=True)]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, version=CACHE_VERSION, **{f"c{i}": c.pcm for i, c in enumerate(clips)})
    return clips


# --- offline ------------------------------------------------------------------------------------
def offline(clips: list[Clip], variants: bool, threads: int) -> list[str]:
    """Whole-clip decodes with faster-whisper's own `transcribe`; returns the variant names."""
    from faster_whisper import WhisperModel

    from cozy_media.audio.resample import resample
    from cozy_media.bundled import WHISPER_TINY_EN, bundled_file

    path = str(bundled_file(*WHISPER_TINY_EN))
    runs = [("int8 beam5", "int8", 5)] + ([("int8 beam1", "int8", 1), ("float32 beam5", "float32", 5)] * variants)
    models: dict[str, Any] = {}
    for name, compute, beam in runs:
        model = models.get(compute) or WhisperModel(path, device="cpu", compute_type=compute, cpu_threads=threads)
        models[compute] = model
        for clip in clips:
            audio = resample(clip.pcm, RATE, 16000).astype(np.float32) / 32768.0
            segments, _ = model.transcribe(
                audio, language="en", beam_size=beam, condition_on_previous_text=False, vad_filter=False
            )
            clip.offline[name] = "".join(s.text for s in segments).strip()
    return [name for name, _, _ in runs]


# --- live ---------------------------------------------------------------------------------------
async def live(url: str, clips: list[Clip], pace: float, silence_ms: int, frame_ms: int = 20) -> None:
    """One Realtime session; each clip is followed by silence until its transcripts are all in."""
    frame = RATE * frame_ms // 1000
    quiet = orjson.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0\0" * frame).decode()}
    ).decode()
    step = frame_ms / 1000 / pace
    session = {
        "type": "realtime",
        "audio": {
            "input": {
                "transcription": {"model": "whisper-1"},
                "turn_detection": {
                    "type": "server_vad",
                    "silence_duration_ms": silence_ms,
                    "prefix_padding_ms": 300,
                    "create_response": False,
                },
            }
        },
    }
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(orjson.dumps({"type": "session.update", "session": session}).decode())
        started: list[str] = []  # item ids, in order
        done: dict[str, str] = {}
        owner: dict[str, int] = {}  # item id -> clip index
        current = -1
        errors: list[Any] = []

        async def read() -> None:
            async for raw in ws:
                ev = orjson.loads(raw)
                kind = ev["type"]
                if kind == "input_audio_buffer.speech_started":
                    started.append(ev["item_id"])
                    owner[ev["item_id"]] = max(current, 0)
                elif kind == "conversation.item.input_audio_transcription.completed":
                    done[ev["item_id"]] = ev["transcript"]
                elif kind == "error":
                    errors.append(ev["error"])

        reader = asyncio.create_task(read())
        next_at = time.perf_counter()

        async def send(message: str) -> None:
            nonlocal next_at
            await ws.send(message)
            next_at += step
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

        try:
            for _ in range(int(500 / frame_ms)):
                await send(quiet)
            for i, clip in enumerate(clips):
                current = i
                raw = clip.pcm.astype("<i2").tobytes()
                for at in range(0, len(raw), 2 * frame):
                    piece = raw[at : at + 2 * frame].ljust(2 * frame, b"\0")
                    await send(
                        orjson.dumps(
                            {"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()}
                        ).decode()
                    )
                waited = 0
                while True:  # silence until every item of this clip has its transcript
                    await send(quiet)
                    waited += frame_ms
                    mine = [item for item in started if owner[item] == i]
                    if waited >= silence_ms + 600 and all(item in done for item in mine):
                        break
                    if waited > 30000:
                        raise RuntimeError(f"no transcript for clip {i} after 30 s of silence")
                clip.live = " ".join(done[item] for item in started if owner[item] == i).strip()
        finally:
            reader.cancel()
        if errors:
            print(f"server errors: {errors}", file=sys.stderr)


# --- report -------------------------------------------------------------------------------------
def score(clips: list[Clip], hyp: Any) -> dict[str, Any]:
    groups: dict[str, list[tuple[str, str]]] = {}
    for clip in clips:
        groups.setdefault(clip.group, []).append((clip.text, hyp(clip) or ""))
    every = [pair for pairs in groups.values() for pair in pairs]
    return {"all": round(wer(every), 4), **{g: round(wer(pairs), 4) for g, pairs in groups.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cozy-url", help="an already-running server (default: start one)")
    ap.add_argument("--pace", type=float, default=1.0, help="audio sent at this many times real time")
    ap.add_argument("--silence-ms", type=int, default=500, help="server_vad silence_duration_ms")
    ap.add_argument("--variants", action="store_true", help="also offline int8 beam 1 and float32 beam 5")
    ap.add_argument("--threads", type=int, default=2, help="CTranslate2 threads of the offline decodes")
    ap.add_argument("--no-live", action="store_true", help="offline figures only")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="for the started server, e.g. COZY_STT_BEAM_SIZE=1 or COZY_STT_COMPUTE_TYPE=float32",
    )
    ap.add_argument("--out", help="report path (default benchmarks/results/wer.json)")
    ap.add_argument(
        "--clips",
        default=str(ROOT / "benchmarks" / "results" / "wer_clips.npz"),
        help="synthesized clips, made once and reused (piper's audio varies from run to run)",
    )
    ap.add_argument("--fresh", action="store_true", help="synthesize the clips again (and overwrite --clips)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    cache = Path(args.clips)
    if args.fresh and cache.exists():
        cache.unlink()
    clips = make_clips(cache)
    speech_s = sum(len(c.pcm) for c in clips) / RATE
    print(f"{len(clips)} clips, {speech_s:.1f} s of speech ({time.perf_counter() - t0:.1f} s)")
    names = offline(clips, args.variants, args.threads)
    print(f"offline decodes done ({time.perf_counter() - t0:.1f} s)")
    proc = None
    if not args.no_live:
        url = args.cozy_url
        if url is None:
            proc, url = start_server(dict(item.split("=", 1) for item in args.env))
        try:
            ws_url = url.replace("http://", "ws://").replace("https://", "wss://").rstrip("/") + "/v1/realtime"
            asyncio.run(live(ws_url, clips, args.pace, args.silence_ms))
        finally:
            if proc is not None:
                proc.stop()
        print(f"live session done ({time.perf_counter() - t0:.1f} s)")

    results = {name: score(clips, lambda c, n=name: c.offline[n]) for name in names}
    if not args.no_live:
        results["live"] = score(clips, lambda c: c.live)
    base = results["int8 beam5"]["all"]
    groups = [g for g, *_ in GROUPS]
    width = max(len(g) for g in groups)
    print(f"\n{'WER':<{width}} " + " ".join(f"{n:>14}" for n in results))
    for g in ["all", *groups]:
        print(f"{g:<{width}} " + " ".join(f"{results[n][g]:>14.3f}" for n in results))
    verdict: dict[str, Any] = {}
    if "live" in results:
        diff = round(results["live"]["all"] - base, 4)
        verdict = {"live_minus_offline_beam5": diff, "target": "<= 0.02", "met": diff <= 0.02}
        print(f"\nlive - offline beam 5 = {diff:+.3f} (target <= +0.020): {'MET' if diff <= 0.02 else 'MISSED'}")
    wrong = [
        {"group": c.group, "ref": c.text, "offline": c.offline["int8 beam5"], "live": c.live}
        for c in clips
        if normalize(c.text) != normalize(c.live or "") or normalize(c.text) != normalize(c.offline["int8 beam5"])
    ]
    params = {k: v for k, v in vars(args).items() if k not in ("out", "fresh")}
    path = write_report("wer", {"params": params, "wer": results, **verdict, "differences": wrong}, args.out)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

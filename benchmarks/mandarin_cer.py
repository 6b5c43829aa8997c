"""Mandarin round trip with the zh pack: espeak-ng's cmn voice speaks each sentence (the server's own
zh TTS engine), the zh STT route (Whisper base multilingual, Simplified output) transcribes it, and
the character error rate against the reference is reported.

    .venv/bin/python benchmarks/mandarin_cer.py [--speeds 0.75,1.0]

Two decodes per clip: `live` is what streaming finals use (text only, the short-form decoder,
greedy), `full` is faster-whisper's own transcribe with the route's beam size (what
/v1/audio/transcriptions with timestamps uses). CER counts Han characters, letters and digits
only (punctuation and spaces are not speech). Needs `make install-zh` and the espeak-ng binary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script

from cozy_actors.config import load_settings  # noqa: E402
from cozy_actors.engines.registry import default_registry  # noqa: E402
from cozy_actors.engines.speech import build_speech  # noqa: E402
from cozy_media.audio.frames import PcmAudio  # noqa: E402
from cozy_media.audio.resample import resample  # noqa: E402
from cozy_media.packs import converter  # noqa: E402
from cozy_media.speech import SpeechService  # noqa: E402

# Everyday requests a voice concierge hears: greetings, bookings, times, places, thanks.
SENTENCES = [
    "你好，很高兴认识你。",
    "今天天气很好，我们去公园散步吧。",
    "请问附近有没有好吃的饭馆？",
    "我想预订明天下午三点的会议室。",
    "谢谢你的帮助，再见。",
    "现在几点了？",
    "请帮我打电话给我的妈妈。",
    "这本书非常有意思。",
]


def speech_chars(text: str) -> str:
    """What CER is computed on: Han characters, letters and digits (no punctuation or spaces)."""
    return "".join(ch for ch in text if ch.isalnum())


def cer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(character edits, reference length) over `speech_chars` (Levenshtein distance)."""
    ref, hyp = speech_chars(reference), speech_chars(hypothesis)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1], len(ref)


def is_simplified(text: str) -> bool:
    """True when converting to Simplified changes nothing (no Traditional-only character left)."""
    return converter("simplified")(text) == text


def zh_service(config_dir: Path = ROOT / "config") -> SpeechService:
    settings = load_settings(config_dir, env={})
    return build_speech(settings.engines, default_registry(load_plugins=False))


async def speak16k(zh: SpeechService, text: str, speed: float = 1.0) -> PcmAudio:
    """`text` spoken by the zh route's TTS (espeak-ng cmn), as 16 kHz PCM16 for the STT."""
    assert zh.tts is not None
    audio = await zh.tts.synthesize(text, voice=zh.settings.default_voice, speed=speed)
    return PcmAudio(resample(audio.samples, audio.sample_rate, 16000).astype("int16"), 16000)


async def measure(speeds: list[float]) -> dict[str, Any]:
    speech = zh_service()
    t0 = time.perf_counter()
    zh = await speech.load_language("zh")
    zh.require("stt")
    zh.require("tts")
    report: dict[str, Any] = {"load_s": round(time.perf_counter() - t0, 2), "runs": []}
    for speed in speeds:
        for mode in ("live", "full"):
            edits = total = 0
            rows = []
            t1 = time.perf_counter()
            for text in SENTENCES:
                clip = await speak16k(zh, text, speed)
                got = (await speech.transcribe(clip, language="zh", text_only=mode == "live")).text
                e, n = cer(text, got)
                edits, total = edits + e, total + n
                rows.append({"ref": text, "hyp": got, "cer": round(e / n, 3), "simplified": is_simplified(got)})
            run = {"speed": speed, "mode": mode, "cer": round(edits / total, 3), "decode_s": 0.0, "clips": rows}
            run["decode_s"] = round(time.perf_counter() - t1, 2)
            report["runs"].append(run)
            print(f"speed {speed} {mode}: CER {run['cer']:.3f} ({edits}/{total} chars)", flush=True)
    await speech.close()
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speeds", default="0.75,1.0", help="TTS speeds (1.0: the voice's words_per_minute)")
    ap.add_argument("--json", type=Path, help="write the full report (every clip) here")
    args = ap.parse_args()
    report = asyncio.run(measure([float(s) for s in args.speeds.split(",")]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    for run in report["runs"]:
        print(json.dumps({k: v for k, v in run.items() if k != "clips"}))
        for row in run["clips"]:
            print("   ", row["cer"], row["ref"], "->", row["hyp"])


if __name__ == "__main__":
    main()

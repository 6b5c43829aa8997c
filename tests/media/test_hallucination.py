"""The STT hallucination filter: its rules on hand-made segments, then the bundled tiny.en on
noise, music, breathing and silence (no text) and on short real phrases that are also on the
phantom list (kept)."""

from __future__ import annotations

import numpy as np
import pytest

from cozy_media.audio.resample import resample
from cozy_media.stt.base import Segment, Transcript
from cozy_media.stt.hallucination import HallucinationFilter, HallucinationOptions, compression_ratio
from cozy_media.stt.whisper import FasterWhisperSTT, WhisperOptions
from tests.support import noise


def seg(text: str, logprob: float = -0.2, no_speech: float = 0.05, i: int = 0) -> Segment:
    return Segment(i, float(i), float(i + 1), text, avg_logprob=logprob, no_speech_prob=no_speech)


def test_rules_on_segments() -> None:
    f = HallucinationFilter()
    assert f.reason(seg(" Turn off the lights.")) is None
    assert f.reason(seg(" I don't know.", logprob=-1.2, no_speech=0.95)) == "no_speech"
    assert f.reason(seg(" I don't know.", logprob=-0.5, no_speech=0.95)) is None  # sure of its words
    assert f.reason(seg(" I'm not going to be able to do that.", logprob=-1.76, no_speech=0.31)) == "low_logprob"
    assert f.reason(seg(" " + "ah" * 40)) == "compression_ratio"
    assert compression_ratio("ah" * 40) > 2.4 > compression_ratio("Turn off the lights in the kitchen.")
    for tag in ("[BLANK_AUDIO]", " (music)", "*sighs*", "♪♪", " [Music] (applause)"):
        assert f.reason(seg(tag)) == "tag", tag
    # Phantom phrases go unless decoded surely; repeated letters and punctuation do not matter.
    for phantom in (" Thank you.", " Thanks for watching!", " you", " Ahhhh!", " Hmmm..."):
        assert f.reason(seg(phantom, logprob=-0.9, no_speech=0.3)) == "phantom", phantom
        assert f.reason(seg(phantom, logprob=-0.2, no_speech=0.5)) == "phantom", phantom
        assert f.reason(seg(phantom, logprob=-0.2, no_speech=0.1)) is None, phantom
    assert f.reason(seg(" Thank you for the help.", logprob=-0.9, no_speech=0.3)) is None  # not the phrase
    # Other scripts are words too (a key of Latin letters only made every Chinese transcript a "tag").
    assert f.reason(seg("请帮我打电话给我的妈妈。", logprob=-0.8)) is None
    assert f.reason(seg(" Ça va très bien.")) is None


def test_apply_keeps_the_speech_segments() -> None:
    f = HallucinationFilter()
    t = Transcript(
        "Set a timer. Thank you.",
        "en",
        2.0,
        (seg(" Set a timer.", i=0), seg(" Thank you.", logprob=-1.1, no_speech=0.7, i=1)),
    )
    kept = f.apply(t)
    assert kept.text == "Set a timer." and len(kept.segments) == 1
    assert f.apply(Transcript("[BLANK_AUDIO]", "en", 1.0)).text == ""  # a provider without segments
    assert f.apply(Transcript("Hello there.", "en", 1.0)).text == "Hello there."
    off = HallucinationFilter(HallucinationOptions(enabled=False))
    assert off.apply(Transcript("[BLANK_AUDIO]", "en", 1.0)).text == "[BLANK_AUDIO]"
    custom = HallucinationFilter(HallucinationOptions(phantom_phrases=["Okay then."]))
    assert custom.reason(seg(" okay, then", logprob=-0.9)) == "phantom"
    assert custom.reason(seg(" Thank you.", logprob=-0.9)) is None


@pytest.fixture
async def engine() -> FasterWhisperSTT:
    """The bundled model (loaded once per process, shared by every instance)."""
    stt = FasterWhisperSTT(WhisperOptions())
    await stt.initialize()
    return stt


NOISES = [
    ("white", -40),
    ("white", -15),
    ("pink", -30),
    ("chords", -40),
    ("chords", -15),
    ("breathing", -40),
    ("breathing", -25),
    ("breathing", -15),
    ("hum", -20),
    ("hum", -10),
    ("silence", 0),
]


@pytest.mark.parametrize("draft", [False, True])
async def test_bundled_whisper_gives_no_text_for_noise(engine: FasterWhisperSTT, draft: bool) -> None:
    unfiltered = FasterWhisperSTT(WhisperOptions(hallucination=HallucinationOptions(enabled=False)))
    await unfiltered.initialize()
    hallucinated = 0
    for name, level in NOISES:
        for seconds in (1.0, 3.0):
            fn = noise.SIGNALS[name]
            pcm = fn(seconds, 16000) if name == "silence" else fn(seconds, 16000, level_db=level)
            audio = pcm.astype(np.float32) / 32768
            got = await engine.transcribe(audio, text_only=True, draft=draft)
            assert got.text == "", (name, level, seconds, got)
            hallucinated += bool((await unfiltered.transcribe(audio, text_only=True, draft=draft)).text)
        full = await engine.transcribe(audio)  # faster-whisper's own decode (uploads) is filtered too
        assert full.text == "", (name, level, [(s.text, s.avg_logprob, s.no_speech_prob) for s in full.segments])
    assert hallucinated >= len(NOISES)  # without the filter, tiny.en does make text of these


async def test_real_short_phrases_survive(engine: FasterWhisperSTT) -> None:
    from cozy_media.tts.piper import PiperTTS

    tts = PiperTTS()
    await tts.initialize()
    for text in ("Thank you.", "Bye bye.", "Please set a timer."):
        spoken = await tts.synthesize(text, voice="joe")
        pcm = resample(spoken.samples, spoken.sample_rate, 16000)
        pad = np.zeros(4800, dtype=np.int16)
        audio = np.concatenate([pad, pcm, pad]).astype(np.float32) / 32768
        got = await engine.transcribe(audio, text_only=True)
        assert got.text.lower().strip(".!") == text.lower().strip("."), got

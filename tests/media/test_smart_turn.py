"""Smart Turn v3.2 on real synthesized speech (espeak-ng): the numpy log-mel features, the model's
verdict on complete and cut-off sentences, and semantic_vad's end of turn on the real Silero VAD."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from cozy_media.audio.resample import resample
from cozy_media.bundled import SILERO_VAD, bundled_file, package_dir
from cozy_media.turn import SemanticVAD, load_smart_turn, turn_probability
from cozy_media.turn.features import N_MELS, WINDOW_SAMPLES, last_window, log_mel, mel_filters
from cozy_media.vad import SpeechStarted, SpeechStopped, load_silero

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

COMPLETE = ["What is the weather like in Paris today?", "Please book me a table for two at seven."]
CUT_OFF = ["I want to", "Can you tell me about the,"]


def espeak(text: str, tmp: Path) -> np.ndarray:
    """int16 16 kHz of `text` spoken by espeak-ng, without its trailing silence."""
    path = tmp / "clip.wav"
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    with wave.open(str(path)) as w:
        rate, raw = w.getframerate(), w.readframes(w.getnframes())
    x = resample(np.frombuffer(raw, dtype="<i2"), rate, 16000)
    voiced = np.nonzero(np.abs(x.astype(np.int32)) > 300)[0]
    return x[: voiced[-1] + 1]


def pause(ms: int) -> np.ndarray:
    return np.zeros(16 * ms, dtype=np.int16)


def test_features_shape_and_scale(tmp_path: Path) -> None:
    filters = mel_filters()
    assert filters.shape == (201, N_MELS) and (filters >= 0).all() and (filters.sum(axis=0) > 0).all()
    clip = espeak(COMPLETE[0], tmp_path)
    window = last_window(clip)
    assert window.dtype == np.float32 and len(window) == WINDOW_SAMPLES
    assert np.count_nonzero(window[: WINDOW_SAMPLES - len(clip)]) == 0  # padded at the front: the end stays last
    assert window[-1] == pytest.approx(clip[-1] / 32768.0)
    feats = log_mel(window)
    assert feats.shape == (N_MELS, 800) and feats.dtype == np.float32
    assert feats.max() - feats.min() == pytest.approx(2.0, abs=1e-3)  # clamped to max - 8 (log10), then / 4
    spoken = feats[:, -len(clip) // 160 :].mean()
    assert spoken > feats[:, :100].mean() + 0.3  # speech has energy where the padding has none
    with pytest.raises(ValueError):
        log_mel(np.zeros(100, dtype=np.float32))


def test_features_equal_pipecats_reference(tmp_path: Path) -> None:
    """Pipecat's own numpy extractor (vendored from transformers' WhisperFeatureExtractor) is in
    the same wheel: load that one file by path, without importing the pipecat package."""
    ref_path = package_dir("pipecat")
    ref_file = ref_path / "audio/turn/smart_turn/_whisper_features.py" if ref_path else None
    if ref_file is None or not ref_file.is_file():
        pytest.skip("pipecat-ai's reference extractor is not installed")
    spec = importlib.util.spec_from_file_location("pipecat_whisper_features", ref_file)
    assert spec is not None and spec.loader is not None
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    for text in (COMPLETE[0], CUT_OFF[0]):
        window = last_window(np.concatenate([espeak(text, tmp_path), pause(200)]))
        np.testing.assert_allclose(log_mel(window), ref.compute_whisper_log_mel_features(window), atol=1e-5)
    long = np.concatenate([espeak(COMPLETE[1], tmp_path)] * 4)  # over 8 s: the newest 8 s count
    np.testing.assert_allclose(
        log_mel(last_window(long)), ref.compute_whisper_log_mel_features(long[-WINDOW_SAMPLES:] / 32768.0), atol=1e-5
    )


def test_model_tells_complete_from_cut_off(tmp_path: Path) -> None:
    model = load_smart_turn()
    assert load_smart_turn() is model  # one per process
    # As at a VAD pause: the sentence, then 200 ms of silence.
    complete = [model.probability(np.concatenate([espeak(t, tmp_path), pause(200)])) for t in COMPLETE]
    cut = [model.probability(np.concatenate([espeak(t, tmp_path), pause(200)])) for t in CUT_OFF]
    assert min(complete) > 0.6, complete
    assert max(cut) < 0.45, cut


async def test_turn_probability_runs_on_the_pool(tmp_path: Path) -> None:
    clip = np.concatenate([espeak(COMPLETE[1], tmp_path), pause(200)])
    p = await turn_probability(clip)
    assert p == pytest.approx(load_smart_turn().probability(clip), abs=1e-5) and p > 0.5


async def run_semantic(vad: SemanticVAD, audio: np.ndarray) -> list:
    """Feed 20 ms frames; while Smart Turn is being asked, at a microphone's pace (so the answer
    lands within the audio time it would live), otherwise as fast as possible."""
    events = []
    for at in range(0, len(audio), 320):
        events += await vad.feed(audio[at : at + 320])
        await asyncio.sleep(0.02 if vad.asking else 0)
    return events


async def test_semantic_vad_ends_a_complete_sentence_early(tmp_path: Path) -> None:
    clip = espeak(COMPLETE[0], tmp_path)
    vad = SemanticVAD(load_silero(bundled_file(*SILERO_VAD)), eagerness="low")  # the maximum is 8 s
    events = await run_semantic(vad, np.concatenate([pause(500), clip, pause(3000)]))
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    stops = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(starts) == 1 and len(stops) == 1, events
    end_ms = (8000 + len(clip)) / 16
    assert end_ms - 300 < stops[0].audio_end_ms <= end_ms + 100
    assert stops[0].detected_ms - stops[0].audio_end_ms < 1200  # the 200 ms check + the model, not 8 s
    assert vad.turns_semantic == 1 and vad.turns_max == 0 and not vad.speaking


async def test_semantic_vad_waits_for_the_maximum_when_cut_off(tmp_path: Path) -> None:
    clip = espeak(CUT_OFF[1], tmp_path)
    vad = SemanticVAD(load_silero(bundled_file(*SILERO_VAD)), eagerness="high")  # the maximum is 2 s
    events = await run_semantic(vad, np.concatenate([pause(500), clip, pause(3000)]))
    stops = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(stops) == 1, events
    assert stops[0].detected_ms - stops[0].audio_end_ms == pytest.approx(2000, abs=40)
    assert vad.turns_semantic == 0 and vad.turns_max == 1


async def test_speech_resuming_cancels_the_question(tmp_path: Path) -> None:
    """A pause that is only a breath: Smart Turn's answer for it must not end the turn later."""
    first, second = espeak(CUT_OFF[0], tmp_path), espeak(COMPLETE[1], tmp_path)
    vad = SemanticVAD(load_silero(bundled_file(*SILERO_VAD)), eagerness="high")
    events = await run_semantic(vad, np.concatenate([pause(500), first, pause(400), second, pause(2500)]))
    stops = [e for e in events if isinstance(e, SpeechStopped)]
    assert len([e for e in events if isinstance(e, SpeechStarted)]) == 1 and len(stops) == 1, events
    assert stops[0].audio_end_ms > (8000 + len(first) + 6400 + len(second)) / 16 - 300  # after the second part


def test_eagerness_sets_the_maximum() -> None:
    model = load_silero(bundled_file(*SILERO_VAD))
    assert [SemanticVAD(model, eagerness=e).params.silence_duration_ms for e in ("low", "medium", "high", "auto")] == [
        8000,
        4000,
        2000,
        4000,
    ]


async def test_a_failing_model_falls_back_to_the_maximum(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def broken(audio: np.ndarray) -> float:
        raise RuntimeError("no model")

    vad = SemanticVAD(load_silero(bundled_file(*SILERO_VAD)), eagerness="high", predict=broken)
    events = await run_semantic(vad, np.concatenate([pause(500), espeak(COMPLETE[0], tmp_path), pause(2500)]))
    stops = [e for e in events if isinstance(e, SpeechStopped)]
    assert len(stops) == 1 and stops[0].detected_ms - stops[0].audio_end_ms == pytest.approx(2000, abs=40)
    assert len([r for r in caplog.records if "smart turn failed" in r.message]) == 1  # once, not per chunk

"""The echo canceller (cozy_media/audio/echo.py) on real speech: the bundled piper voice's clips.

The far end is a reply clip; the microphone hears it 60 ms later at -10 dB (a speakerphone), and
in the double-talk case also a second clip spoken over it. Time runs on a fake clock so the
pairing of reference and microphone is what it is at a real call, without waiting in real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from cozy_media.audio import echo
from cozy_media.audio.echo import RATE, EchoCanceller

from .conftest import Clip

pytestmark = pytest.mark.skipif(not echo.available(), reason="the livekit wheel is not installed")

CHUNK = 320  # 20 ms microphone chunks, as a WebRTC client sends them
SEND = 1600  # 100 ms reply chunks, as SpeechOutput sends them


def _db(x: np.ndarray) -> float:
    x = x.astype(np.float64)
    return 10.0 * np.log10(float(np.mean(x * x)) + 1e-9)


def _call(
    far: np.ndarray,
    near_speech: np.ndarray | None,
    gain_db: float | None = -10.0,
    near_at: int | None = None,
    delay_s: float = 0.060,
    late_s: Callable[[int], float] = lambda k: 0.0,
) -> tuple[np.ndarray, np.ndarray, EchoCanceller, float]:
    """Run one reply through a call (echo at `gain_db`, None: a headset, no echo; microphone chunk
    k arrives `late_s(k)` after it was captured): returns (microphone, cleaned, canceller, CPU s)."""
    now = [100.0]
    aec = EchoCanceller(clock=lambda: now[0])
    delay = int(delay_s * RATE)
    mic = np.zeros(len(far) + delay, dtype=np.float64)
    if gain_db is not None:
        mic[delay:] = far * 10 ** (gain_db / 20)
    if near_speech is not None:
        at = len(mic) // 2 if near_at is None else near_at
        mic[at : at + len(near_speech)] += near_speech[: len(mic) - at]
    mic16 = np.clip(mic, -32768, 32767).astype(np.int16)
    out, sent = [], 0
    # The reply is paced as SpeechOutput paces it: the first 200 ms at once, then in real time.
    cpu = time.thread_time()
    for at in range(0, len(mic16) - CHUNK + 1, CHUNK):
        t = 100.0 + (at + CHUNK) / RATE
        while sent < len(far) and sent / RATE - 0.2 <= t - 100.0:
            now[0] = max(100.0, 100.0 + sent / RATE - 0.2)
            aec.reference(far[sent : sent + SEND], RATE)
            sent += SEND
        now[0] = t + late_s(at // CHUNK)
        out.append(aec.process(mic16[at : at + CHUNK], arrived=now[0]))
    cpu = time.thread_time() - cpu
    cleaned = np.concatenate(out)
    return mic16[: len(cleaned)], cleaned, aec, cpu


@pytest.mark.parametrize("delay_s", [0.060, 0.700])
def test_echo_return_loss_enhancement_on_a_real_reply(clips: list[Clip], delay_s: float) -> None:
    """60 ms: AEC3 alone finds the echo; 700 ms (a jitter buffer, a loaded server): only after the
    coarse alignment has measured the lag."""
    far = np.concatenate([c.at(RATE) for c in clips[:2]])
    mic, cleaned, aec, cpu = _call(far, None, delay_s=delay_s)
    settled = slice(2 * RATE, len(cleaned))  # AEC3 converges within the first second or two
    erle = _db(mic[settled]) - _db(cleaned[settled])
    first = _db(mic[: 2 * RATE]) - _db(cleaned[: 2 * RATE])
    per_s = cpu / (len(mic) / RATE) * 1000
    print(
        f"delay {delay_s * 1000:.0f} ms (shift {aec.shift_s * 1000:.0f}): ERLE {first:.1f} dB (2 s), {erle:.1f} after"
    )
    print(f"(AEC3 alone {aec.erle_db():.1f} dB); {per_s:.1f} ms CPU/s")
    if delay_s > 0.5:
        late = slice(4 * RATE, len(cleaned))  # the lag is measured at 2 s, AEC3 has re-converged by 4 s
        assert aec.shift_s == pytest.approx(delay_s - 0.04, abs=0.03)
        assert _db(mic[late]) - _db(cleaned[late]) > 25.0
        return
    assert first > 15.0
    assert erle > 25.0
    frames = cleaned[settled][: (len(cleaned) - 2 * RATE) // 160 * 160].reshape(-1, 160)
    assert np.count_nonzero(np.any(frames, axis=1)) <= len(frames) // 100  # the VAD hears silence, no comfort noise
    assert aec.frames == len(cleaned) // (RATE // 100)
    assert aec.erle_db() > 15.0


def test_arrival_jitter_does_not_move_the_echo_path(clips: list[Clip]) -> None:
    """The microphone's chunks wait 0-3 ms on their way, and the least-delayed one comes only every
    2.5 s: the near clock's estimate (the least delay of the last 2 s) steps by ms as it comes and
    goes. Were each step applied, every later frame would move against the reference and AEC3
    would re-converge each time, leaking ~200 ms of echo into the VAD's input (seen on a loaded
    machine: a speakerphone call that interrupted itself 4 s into the reply)."""
    far = np.concatenate([c.at(RATE) for c in clips[:3]])
    mic, cleaned, _, _ = _call(far, None, late_s=lambda k: 0.0 if k % 125 == 0 else 0.002 + 0.001 * (k % 2))
    settled = slice(2 * RATE, len(cleaned))
    frames = cleaned[: len(cleaned) // 160 * 160].reshape(-1, 160).astype(np.float64)
    leaked = int(np.sum(np.sum(frames * frames, axis=1) > 160 * 100.0**2))  # frames above -50 dBFS
    erle = _db(mic[settled]) - _db(cleaned[settled])
    print(f"jitter: ERLE {erle:.1f} dB after 2 s, {leaked} frames of echo above -50 dBFS left")
    assert erle > 25.0
    assert leaked <= 5


def test_speech_over_the_reply_survives(clips: list[Clip]) -> None:
    far = np.concatenate([c.at(RATE) for c in clips[:2]])
    near = clips[2].at(RATE)
    mic, cleaned, _, _ = _call(far, near)
    at = len(mic) // 2
    span = slice(at, min(len(cleaned), at + len(near)))
    kept = _db(cleaned[span]) - _db(near[: span.stop - span.start])
    # The user's words come through nearly whole (a few dB at most), the echo does not.
    assert kept > -6.0, kept

    # The user's voiced frames (20 ms, the louder half of the clip's) come through nearly whole; the
    # frames the gate mutes are the pauses where only the echo was.
    def contour(x: np.ndarray) -> np.ndarray:
        x = x[: len(x) - len(x) % 320].astype(np.float64).reshape(-1, 320)
        return 10 * np.log10(np.mean(x * x, axis=1) + 1.0)

    n = span.stop - span.start
    got, user = contour(cleaned[span]), contour(near[:n])
    voiced = user > np.median(user)
    kept_frames = float(np.mean(got[voiced] > user[voiced] - 10.0))
    print(f"double talk: {kept:.1f} dB of the user kept; {kept_frames:.0%} of the voiced frames within 10 dB")
    assert kept_frames > 0.5  # measured 60-78 %: AEC3 still suppresses some of the double talk


def test_no_reply_passes_the_input_through() -> None:
    aec = EchoCanceller()
    rng = np.random.default_rng(1)
    mic = (rng.standard_normal(RATE) * 3000).astype(np.int16)
    out = np.concatenate([aec.process(mic[i : i + 333]) for i in range(0, len(mic), 333)])
    assert np.array_equal(out, mic[: len(out)])  # untouched, only regrouped in 10 ms frames
    assert len(mic) - len(out) < RATE // 100
    assert aec.frames == 0


def test_reference_state_is_bounded() -> None:
    now = [0.0]
    aec = EchoCanceller(clock=lambda: now[0])
    chunk = np.ones(2400, dtype=np.int16)  # 100 ms at 24 kHz
    for _ in range(600):  # 60 s of reply, sent all at once
        aec.reference(chunk, 24000)
    assert aec._ref.nbytes == int(echo.KEEP_S * RATE) * 2
    assert aec._ref_end == pytest.approx(60.0, abs=0.05)
    aec.stop_reference()  # a barge-in at t=0: nothing of it plays any more
    assert not aec.playing(now=10.0)


def test_a_headset_caller_talking_over_the_reply_is_heard_at_once(clips: list[Clip]) -> None:
    """No echo at all: AEC3 has learnt nothing of the room yet, and would suppress the caller's
    first second or two; the double-talk override lets the voice through from its first words."""
    far = np.concatenate([c.at(RATE) for c in clips[:2]])
    near = clips[2].at(RATE)
    at = int(0.6 * RATE)  # 0.6 s into the reply, as the WebRTC barge-in test does
    mic, cleaned, aec, _ = _call(far, near, gain_db=None, near_at=at)
    onset = at + int(np.flatnonzero(np.abs(near) > 1000)[0])
    first = slice(onset, onset + RATE // 2)  # the first 500 ms of the caller's voice
    kept = _db(cleaned[first]) - _db(mic[first])
    print(f"headset: first 500 ms of the caller kept at {kept:.1f} dB; {aec.passed} frames passed by the override")
    assert kept > -3.0

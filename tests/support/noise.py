"""Non-speech test signals (PCM16 mono at any rate): what a microphone picks up between turns and
what Whisper likes to hallucinate text from. Seeded, so a failure reproduces."""

from __future__ import annotations

import numpy as np


def _pcm(x: np.ndarray, level_db: float) -> np.ndarray:
    """Scale to an RMS of `level_db` dBFS, as int16."""
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) or 1.0
    y = x * (10 ** (level_db / 20) / rms)
    return np.clip(y * 32767, -32768, 32767).astype(np.int16)


def white(seconds: float, rate: int, level_db: float = -30.0, seed: int = 1) -> np.ndarray:
    return _pcm(np.random.default_rng(seed).standard_normal(int(seconds * rate)), level_db)


def pink(seconds: float, rate: int, level_db: float = -30.0, seed: int = 2) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain."""
    n = int(seconds * rate)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    return _pcm(np.fft.irfft(spectrum, n), level_db)


def chords(seconds: float, rate: int, level_db: float = -20.0) -> np.ndarray:
    """Music-like: a I-V-vi-IV progression of piano-ish tones (harmonics, decaying notes)."""
    roots = (261.63, 392.00, 440.00, 349.23)  # C, G, A, F
    shapes = ((0, 4, 7), (0, 4, 7), (0, 3, 7), (0, 4, 7))
    beat = 0.5
    t = np.arange(int(beat * rate)) / rate
    env = np.exp(-3.0 * t)
    pieces = []
    for k in range(int(seconds / beat)):
        root, shape = roots[(k // 2) % 4], shapes[(k // 2) % 4]
        note = np.zeros_like(t)
        for semis in shape:
            f = root * 2 ** (semis / 12)
            for h, a in ((1, 1.0), (2, 0.4), (3, 0.2)):
                note += a * np.sin(2 * np.pi * f * h * t)
        pieces.append(note * env)
    return _pcm(np.concatenate(pieces), level_db)


def breathing(seconds: float, rate: int, level_db: float = -28.0, seed: int = 3) -> np.ndarray:
    """Breaths: band-passed noise (300–2000 Hz) in swells of about 1.2 s in, 1.6 s out."""
    n = int(seconds * rate)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(f < 300) | (f > 2000)] = 0
    noise = np.fft.irfft(spectrum, n)
    t = np.arange(n) / rate
    cycle = np.mod(t, 3.5)
    exhale = np.where(cycle < 1.6, 0.0, np.sin(np.pi * (cycle - 1.6) / 1.6))
    swell = np.where(cycle < 1.2, np.sin(np.pi * cycle / 1.2), exhale)
    return _pcm(noise * np.clip(swell, 0, None) ** 2, level_db)


def hum(seconds: float, rate: int, level_db: float = -20.0) -> np.ndarray:
    """Humming along to music: a voiced, vowel-coloured tone (110–165 Hz glottal pulses with
    vibrato through /a/-like formants) in note-long swells. No words, but voice-like enough that
    a VAD may call it speech."""
    n = int(seconds * rate)
    t = np.arange(n) / rate
    notes = 110.0 * 2 ** (np.array([0, 4, 7, 4, 2, 0]) / 12)
    f0 = notes[(t / 0.6).astype(int) % len(notes)] * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = np.cumsum(f0 / rate)
    source = 2 * (phase % 1.0) - 1  # sawtooth: rich in harmonics, like the glottis
    spectrum = np.fft.rfft(source)
    f = np.fft.rfftfreq(n, 1 / rate)
    gain = sum(a / (1 + ((f - fc) / bw) ** 2) for fc, bw, a in ((700, 90, 1.0), (1220, 110, 0.5), (2600, 160, 0.25)))
    voiced = np.fft.irfft(spectrum * gain, n)
    swell = np.sin(np.pi * np.mod(t, 0.6) / 0.6) ** 0.5
    return _pcm(voiced * swell, level_db)


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


SIGNALS = {"white": white, "pink": pink, "chords": chords, "breathing": breathing, "hum": hum, "silence": silence}

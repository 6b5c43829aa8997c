"""Whisper log-mel features for Smart Turn v3, in numpy (no torch, no transformers).

Why reimplemented: Smart Turn's ONNX graph takes the features, not audio, and the reference
extractor (transformers.WhisperFeatureExtractor with chunk_length=8) would pull torch-sized
dependencies. The math follows it exactly: 8 s at 16 kHz, zero-mean unit-variance waveform,
centred (reflect-padded) 400-point periodic-Hann STFT every 160 samples, power spectrum, 80
Slaney mel filters (0-8 kHz), log10 floored at 1e-10, the last frame dropped, clamped to
max - 8, then (x + 4) / 4. Output float32 [80, 800].
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16000
WINDOW_S = 8
WINDOW_SAMPLES = WINDOW_S * SAMPLE_RATE
N_FFT = 400
HOP = 160
N_MELS = 80


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) * (27.0 / np.log(6.4)), mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    return np.where(mels >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels - 15.0)), freq)


def mel_filters() -> np.ndarray:
    """Slaney-normalised triangular filters, [201 frequency bins, 80 mels]."""
    bins = N_FFT // 2 + 1
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    fft_freqs = np.linspace(0, SAMPLE_RATE // 2, bins)
    widths = np.diff(edges)
    slopes = edges[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2 : N_MELS + 2] - edges[:N_MELS]))[None, :]


_MELS_T = mel_filters().T.copy()  # [80, 201]
_HANN = np.hanning(N_FFT + 1)[:-1]  # periodic Hann (torch.hann_window)


def last_window(audio: np.ndarray) -> np.ndarray:
    """The newest 8 s of `audio` as float32, zero-padded at the front when shorter (as Pipecat
    feeds the model: the end of the turn is always at the end of the window)."""
    x = np.asarray(audio)
    x = x.astype(np.float32) * (1.0 / 32768.0) if x.dtype == np.int16 else x.astype(np.float32, copy=False)
    if len(x) >= WINDOW_SAMPLES:
        return x[-WINDOW_SAMPLES:]
    out = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    out[WINDOW_SAMPLES - len(x) :] = x
    return out


def log_mel(window: np.ndarray) -> np.ndarray:
    """Features of one 8 s window (float32, exactly WINDOW_SAMPLES long) → float32 [80, 800]."""
    if window.ndim != 1 or len(window) != WINDOW_SAMPLES:
        raise ValueError(f"expected {WINDOW_SAMPLES} samples, got shape {window.shape}")
    x = window.astype(np.float32)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)  # in float32, as the reference normalises
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]  # [801, 400], a view
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2  # [801, 201]
    spec = np.log10(np.maximum(1e-10, _MELS_T @ power.T))[:, :-1]  # [80, 800]
    spec = np.maximum(spec, spec.max() - 8.0)
    return ((spec + 4.0) / 4.0).astype(np.float32)

"""Sample-rate conversion with soxr (high quality, about 15 µs per 20 ms frame).

Why a stream object: resampling frame by frame with a one-shot call would click at every frame
boundary; `Resampler` carries the filter state of one session's audio stream.
"""

from __future__ import annotations

import numpy as np
import soxr


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """One-shot conversion of a whole int16 (or float32) signal."""
    if from_rate == to_rate or len(samples) == 0:
        return samples
    return soxr.resample(samples, from_rate, to_rate, quality="HQ")


class Resampler:
    """Streaming int16 mono resampler; feed chunks with `process`, then `flush` once at the end."""

    def __init__(self, from_rate: int, to_rate: int, quality: str = "HQ") -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream = (
            None if from_rate == to_rate else soxr.ResampleStream(from_rate, to_rate, 1, dtype="int16", quality=quality)
        )

    def process(self, samples: np.ndarray) -> np.ndarray:
        if self._stream is None:
            return samples
        # As one 2-D channel: soxr's 1-D path adds an np.squeeze call per chunk (a hot path, per frame).
        return self._stream.resample_chunk(samples.astype(np.int16, copy=False).reshape(-1, 1)).reshape(-1)

    def flush(self) -> np.ndarray:
        """The samples still inside the filter (call once, after the last chunk)."""
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)

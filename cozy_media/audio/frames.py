"""PCM16 mono audio with its sample rate: the one audio type every media piece passes around.

Why int16 at rest: it is what the wire formats carry (OpenAI `pcm`, Realtime `audio/pcm`, WebRTC
frames), it halves memory against float32, and the models convert once at their boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cozy_core.errors import CozyError

INT16_SCALE = 32768.0


class AudioFormatError(CozyError):
    """Corrupt, empty or unsupported audio: always a 400 VALIDATION_AUDIO_FORMAT, never a 500."""

    def __init__(self, message: str, *, param: str | None = "file") -> None:
        super().__init__(message, code="VALIDATION_AUDIO_FORMAT", status=400, param=param)


@dataclass(frozen=True, slots=True)
class PcmAudio:
    """Mono PCM16 samples (1-D int16 array) at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0

    @property
    def duration_ms(self) -> float:
        return self.duration_s * 1000.0

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview, sample_rate: int) -> PcmAudio:
        """Little-endian PCM16 bytes (an odd trailing byte is dropped); no copy where possible."""
        usable = len(data) - (len(data) % 2)
        return cls(np.frombuffer(data, dtype="<i2", count=usable // 2).astype(np.int16, copy=False), sample_rate)

    @classmethod
    def empty(cls, sample_rate: int) -> PcmAudio:
        return cls(np.zeros(0, dtype=np.int16), sample_rate)

    def to_bytes(self) -> bytes:
        return self.samples.astype("<i2", copy=False).tobytes()

    def to_float32(self) -> np.ndarray:
        return int16_to_float32(self.samples)


def int16_to_float32(samples: np.ndarray) -> np.ndarray:
    """[-32768, 32767] → [-1, 1) float32 (what Whisper and Silero take)."""
    return samples.astype(np.float32) * (1.0 / INT16_SCALE)


def float32_to_int16(samples: np.ndarray) -> np.ndarray:
    """[-1, 1] float → int16 with clipping (piper and resamplers may overshoot slightly)."""
    return np.clip(np.rint(samples * INT16_SCALE), -32768, 32767).astype(np.int16)


def concat(chunks: list[PcmAudio], sample_rate: int) -> PcmAudio:
    """Join chunks that share `sample_rate`."""
    if not chunks:
        return PcmAudio.empty(sample_rate)
    return PcmAudio(np.concatenate([c.samples for c in chunks]), sample_rate)

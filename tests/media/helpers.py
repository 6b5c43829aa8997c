"""Small helpers shared by the speech e2e tests."""

from __future__ import annotations

import jiwer
import numpy as np

from cozy_media.audio.decode import decode_audio

_NORM = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)


def wer(reference: str | list[str], hypothesis: str | list[str]) -> float:
    return jiwer.wer(reference, hypothesis, reference_transform=_NORM, hypothesis_transform=_NORM)


def seconds_of(data: bytes) -> float:
    """Duration of an encoded audio file, decoded with the server's own decoder."""
    audio, _ = decode_audio(data, sample_rate=16000)
    return audio.duration_s


def sse_data(text: str) -> list[str]:
    """The `data:` payloads of an SSE body."""
    return [line[5:].strip() for block in text.split("\n\n") for line in block.splitlines() if line.startswith("data:")]


def pcm_seconds(data: bytes, rate: int = 24000) -> float:
    return len(np.frombuffer(data, dtype="<i2")) / rate

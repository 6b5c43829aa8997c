"""Decode an uploaded audio file (wav, mp3, m4a/mp4/aac, ogg/opus, webm, flac) to PCM16 mono.

Why every failure becomes AudioFormatError: uploads come from anywhere, and a corrupt or foreign
file is the caller's mistake (400 VALIDATION_AUDIO_FORMAT), never a server error.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import av
import numpy as np

from .frames import AudioFormatError, PcmAudio

# PyAV/FFmpeg container name → the upload format family it belongs to.
_FAMILIES = {
    "wav": "wav",
    "mp3": "mp3",
    "mov,mp4,m4a,3gp,3g2,mj2": "m4a",
    "aac": "aac",
    "ogg": "ogg",
    "matroska,webm": "webm",
    "flac": "flac",
}
# Names a client or the configuration may use for a family.
ALIASES = {"mp4": "m4a", "mpeg": "mp3", "mpga": "mp3", "opus": "ogg", "oga": "ogg", "weba": "webm"}
UPLOAD_FORMATS = ("wav", "mp3", "m4a", "aac", "ogg", "webm", "flac")
MIN_DURATION_S = 0.1  # what OpenAI accepts too; less is a cut-off or broken file


def normalize_formats(names: Iterable[str]) -> frozenset[str]:
    """Configured format names (aliases allowed) → the families they admit."""
    return frozenset(ALIASES.get(n.lower(), n.lower()) for n in names)


def decode_audio(
    data: bytes,
    *,
    sample_rate: int = 16000,
    allowed: frozenset[str] | None = None,
    max_duration_s: float | None = None,
) -> tuple[PcmAudio, str]:
    """Decode `data` to mono int16 at `sample_rate`; returns the audio and its format family."""
    if not data:
        raise AudioFormatError("the audio file is empty")
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioFormatError(f"not a readable audio file ({_reason(exc)})") from None
    with container:
        family = _FAMILIES.get(container.format.name, container.format.name)
        if allowed is not None and family not in allowed:
            raise AudioFormatError(f"unsupported audio format {family!r} (allowed: {', '.join(sorted(allowed))})")
        if not container.streams.audio:
            raise AudioFormatError("the file has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        limit = int(max_duration_s * sample_rate) if max_duration_s else None
        chunks: list[np.ndarray] = []
        total = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    continue  # a damaged packet: skip it, as ffmpeg does
                for frame in frames:
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray().reshape(-1))
                        total += out.samples
                if limit is not None and total > limit:
                    raise AudioFormatError(f"audio is longer than the {max_duration_s:.0f} s limit", param="file")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except AudioFormatError:
            raise
        except (av.FFmpegError, ValueError, OSError) as exc:
            if not chunks:
                raise AudioFormatError(f"cannot decode the audio ({_reason(exc)})") from None
    samples = np.concatenate(chunks).astype(np.int16, copy=False) if chunks else np.zeros(0, np.int16)
    if len(samples) < sample_rate * MIN_DURATION_S:
        raise AudioFormatError(
            f"no usable audio in the file (under {MIN_DURATION_S} s decoded: empty, truncated or corrupt)"
        )
    return PcmAudio(samples, sample_rate), family


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.split(":")[0].strip()[:120]

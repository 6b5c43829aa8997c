"""Encode PCM16 mono to the speech output formats, whole or chunk by chunk.

Formats: mp3, opus (Ogg), aac (ADTS), flac, wav, pcm (raw s16le), ulaw and alaw (G.711, 8 kHz).
Why a streaming encoder: speech streams sentence by sentence, and each chunk's bytes must leave
as soon as that chunk is synthesized; the containers chosen here (mp3, Ogg with 20 ms pages,
ADTS, FLAC frames, WAV with an open-ended header) can all be written forward-only.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import av
import numpy as np

from . import g711
from .resample import Resampler


@dataclass(frozen=True)
class OutputFormat:
    name: str
    content_type: str
    sample_rate: int | None  # None: keep the input rate
    container: str | None = None  # PyAV muxer; None: written here
    codec: str | None = None
    options: tuple[tuple[str, str], ...] = ()


FORMATS: dict[str, OutputFormat] = {
    "mp3": OutputFormat("mp3", "audio/mpeg", None, "mp3", "libmp3lame"),
    "opus": OutputFormat("opus", "audio/ogg", None, "ogg", "libopus", (("page_duration", "20000"),)),
    "aac": OutputFormat("aac", "audio/aac", None, "adts", "aac"),
    "flac": OutputFormat("flac", "audio/flac", None, "flac", "flac"),
    "wav": OutputFormat("wav", "audio/wav", None),
    "pcm": OutputFormat("pcm", "audio/pcm", None),
    "ulaw": OutputFormat("ulaw", "audio/basic", 8000),
    "alaw": OutputFormat("alaw", "audio/x-alaw-basic", 8000),
}
FORMAT_ALIASES = {"pcmu": "ulaw", "mulaw": "ulaw", "g711_ulaw": "ulaw", "pcma": "alaw", "g711_alaw": "alaw"}
# libopus accepts only these input rates.
_OPUS_RATES = (48000, 24000, 16000, 12000, 8000)


def output_format(name: str) -> OutputFormat | None:
    """The format called `name` (aliases allowed), or None."""
    key = name.lower()
    return FORMATS.get(FORMAT_ALIASES.get(key, key))


class _Sink(io.RawIOBase):
    """Forward-only byte sink the muxer writes into; `take()` hands over what it has."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


def wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """A PCM16 mono WAV header; `data_bytes=None` writes the open-ended size used for streaming."""
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", size)
    )


class StreamEncoder:
    """Encodes successive int16 chunks at `input_rate` into one continuous file of `fmt`."""

    def __init__(self, fmt: str, input_rate: int, *, total_samples: int | None = None) -> None:
        spec = output_format(fmt)
        if spec is None:
            raise ValueError(f"unknown output format {fmt!r}")
        self.format = spec
        rate = spec.sample_rate or input_rate
        if spec.codec == "libopus" and rate not in _OPUS_RATES:
            rate = 24000 if rate <= 24000 else 48000
        self.sample_rate = rate
        self._resampler = Resampler(input_rate, rate) if rate != input_rate else None
        self._total = total_samples if self._resampler is None else None
        self._started = False
        self._pts = 0
        self._container = None
        self._stream = None
        self._sink: _Sink | None = None
        if spec.container:
            self._sink = _Sink()
            self._container = av.open(self._sink, mode="w", format=spec.container, options=dict(spec.options))
            self._stream = self._container.add_stream(spec.codec, rate=rate)
            self._stream.layout = "mono"

    def encode(self, samples: np.ndarray) -> bytes:
        """Bytes for this chunk (may be empty while a codec fills its first frame)."""
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        return self._encode(samples, last=False)

    def finish(self) -> bytes:
        """The remaining bytes; the encoder is closed afterwards."""
        tail = self._resampler.flush() if self._resampler is not None else np.zeros(0, np.int16)
        return self._encode(tail, last=True)

    def _encode(self, samples: np.ndarray, *, last: bool) -> bytes:
        samples = samples.astype(np.int16, copy=False)
        name = self.format.name
        head = b""
        if not self._started:
            self._started = True
            if name == "wav":
                head = wav_header(self.sample_rate, None if self._total is None else self._total * 2)
        if name in ("wav", "pcm"):
            return head + samples.astype("<i2", copy=False).tobytes()
        if name == "ulaw":
            return g711.ulaw_encode(samples)
        if name == "alaw":
            return g711.alaw_encode(samples)
        assert self._container is not None and self._stream is not None and self._sink is not None
        if len(samples):
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self._pts
            self._pts += len(samples)
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        if last:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
        return self._sink.take()


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode a whole int16 signal (WAV gets its exact sizes)."""
    encoder = StreamEncoder(fmt, sample_rate, total_samples=len(samples))
    return encoder.encode(samples) + encoder.finish()

"""G.711 μ-law and A-law (8-bit telephony codecs) through lookup tables.

Why tables: `audioop` is gone from Python 3.13, and a per-frame codec call costs more than one
numpy index per sample. The tables are built once, lazily, by FFmpeg's own pcm_mulaw/pcm_alaw
codecs (through PyAV), so the results are exactly what FFmpeg-based peers produce.
"""

from __future__ import annotations

import threading

import av
import numpy as np

_tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_lock = threading.Lock()


def _build(codec: str) -> tuple[np.ndarray, np.ndarray]:
    every = np.arange(-32768, 32768, dtype=np.int16)
    enc = av.codec.CodecContext.create(codec, "w")
    enc.sample_rate, enc.layout, enc.format = 8000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(every.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    packets = [*enc.encode(frame), *enc.encode(None)]
    encode_table = np.frombuffer(b"".join(bytes(p) for p in packets), dtype=np.uint8).copy()
    dec = av.codec.CodecContext.create(codec, "r")
    dec.sample_rate, dec.layout = 8000, "mono"
    frames = dec.decode(av.Packet(bytes(range(256))))
    decode_table = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.int16)
    return encode_table, decode_table


def _table(codec: str) -> tuple[np.ndarray, np.ndarray]:
    tables = _tables.get(codec)
    if tables is None:
        with _lock:
            tables = _tables.get(codec) or _build(codec)
            _tables[codec] = tables
    return tables


def ulaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples → μ-law bytes."""
    return _table("pcm_mulaw")[0][samples.astype(np.int32) + 32768].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """μ-law bytes → int16 samples."""
    return _table("pcm_mulaw")[1][np.frombuffer(data, dtype=np.uint8)]


def alaw_encode(samples: np.ndarray) -> bytes:
    """int16 samples → A-law bytes."""
    return _table("pcm_alaw")[0][samples.astype(np.int32) + 32768].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """A-law bytes → int16 samples."""
    return _table("pcm_alaw")[1][np.frombuffer(data, dtype=np.uint8)]

"""Input noise suppression with RNNoise (the `pyrnnoise` wheel's bundled librnnoise, torch-free).

Why our own ctypes binding: the wheel's package `__init__` imports audiolab/matplotlib for its file
API; only the C library is needed here, so it is loaded from the installed package directory and
the rest is never imported (pyrnnoise is installed --no-deps). RNNoise takes 480-sample frames of
48 kHz float audio in int16 scale; `Denoiser` carries one stream's state and its partial frame, so
callers feed any chunk size. About 55 µs of CPU per 10 ms frame: it runs in the worker pool.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading

import numpy as np

RATE = 48000
FRAME = 480  # 10 ms at 48 kHz
_lib: ctypes.CDLL | None = None
_lock = threading.Lock()


class DenoiserUnavailable(RuntimeError):
    """The pyrnnoise wheel (its librnnoise) is not installed."""


def _library() -> ctypes.CDLL:
    global _lib
    with _lock:
        if _lib is None:
            spec = importlib.util.find_spec("pyrnnoise")
            where = list(spec.submodule_search_locations or []) if spec is not None else []
            path = os.path.join(where[0], "librnnoise.so") if where else ""
            if not path or not os.path.exists(path):
                raise DenoiserUnavailable("pyrnnoise (librnnoise) is not installed")
            lib = ctypes.CDLL(path)
            lib.rnnoise_create.restype = ctypes.c_void_p
            lib.rnnoise_create.argtypes = [ctypes.c_void_p]
            lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
            lib.rnnoise_process_frame.restype = ctypes.c_float
            lib.rnnoise_process_frame.argtypes = [
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_float),
                ctypes.POINTER(ctypes.c_float),
            ]
            if lib.rnnoise_get_frame_size() != FRAME:
                raise DenoiserUnavailable("unexpected RNNoise frame size")
            _lib = lib
        return _lib


def available() -> bool:
    try:
        _library()
    except (DenoiserUnavailable, OSError):
        return False
    return True


class Denoiser:
    """One audio stream's RNNoise state: int16 48 kHz in, int16 48 kHz out (whole frames only; the
    rest waits for the next chunk, so output lags input by under 10 ms)."""

    def __init__(self) -> None:
        self._lib = _library()
        self._state: int | None = self._lib.rnnoise_create(None)
        self._rest = np.zeros(0, dtype=np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Denoise a chunk (not thread-safe: one stream's chunks in order, as a session feeds them)."""
        if self._state is None:
            raise RuntimeError("denoiser closed")
        data = (
            np.concatenate([self._rest, samples.astype(np.float32)]) if len(self._rest) else samples.astype(np.float32)
        )
        whole = len(data) - len(data) % FRAME
        out = np.ascontiguousarray(data[:whole])
        self._rest = data[whole:].copy()
        ptr_type = ctypes.POINTER(ctypes.c_float)
        for at in range(0, whole, FRAME):
            ptr = out[at:].ctypes.data_as(ptr_type)
            self._lib.rnnoise_process_frame(self._state, ptr, ptr)
        return np.clip(out, -32768, 32767).astype(np.int16)

    def close(self) -> None:
        if self._state is not None:
            self._lib.rnnoise_destroy(self._state)
            self._state = None

    def __del__(self) -> None:
        self.close()

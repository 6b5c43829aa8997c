"""Silero VAD (v5/v6 ONNX from the `silero-vad` wheel) run with onnxruntime alone, no torch.

Model contract: input float32 [B, 64 + 512] (the last 64 samples of the previous chunk, then 512
new samples at 16 kHz), state float32 [2, B, 128] carried between chunks (B independent streams
per call: see `batch.py`), sr int64; outputs the speech probability and the next state. One ONNX
session per process, shared by every stream (onnxruntime's `run` is thread-safe); the per-stream
state lives in `StreamingVAD`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from cozy_core.engines import Engine, EngineError, EngineOptions, Health, blank_to_none

from ..bundled import SILERO_VAD, bundled_file
from .stream import StreamingVAD, VadParams

SAMPLE_RATE = 16000
CHUNK = 512
CONTEXT = 64

_models: dict[tuple[str, int], SileroModel] = {}
_models_lock = threading.Lock()


class SileroModel:
    """A loaded Silero ONNX session; `step` runs one 32 ms chunk."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = path
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        self.batch_window_s = 0.0  # set by SileroVAD from its options; read by the batcher

    def new_state(self) -> np.ndarray:
        return np.zeros((2, 1, 128), dtype=np.float32)

    def step(self, window: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        """`window`: float32 [1, 576] (context + chunk). Returns (probability, next state)."""
        out, next_state = self._session.run(None, {"input": window, "state": state, "sr": self._sr})
        return float(out[0, 0]), next_state

    def step_batch(self, windows: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """B independent streams at once: windows [B, 576], states [2, B, 128]."""
        out, next_state = self._session.run(None, {"input": windows, "state": states, "sr": self._sr})
        return out[:, 0], next_state


def load_silero(path: Path, threads: int = 1) -> SileroModel:
    """The process-wide model for `path` (loaded on first use, then shared)."""
    key = (str(path), threads)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = SileroModel(path, threads)
        return model


class SileroOptions(EngineOptions):
    model_path: str | None = None
    threads: int = Field(1, ge=1, le=8)
    # How long a batch of several sessions' chunks waits for more (batch.py): CPU against VAD delay.
    batch_window_ms: float = Field(20.0, ge=0, le=100)

    @field_validator("model_path", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return blank_to_none(value)


class VADEngine(Engine):
    """Interface of the `vad` kind: a factory of cheap per-session streaming detectors."""

    kind: ClassVar[str] = "vad"
    api_version: ClassVar[int] = 1

    def create_stream(self, params: VadParams | None = None) -> StreamingVAD:
        raise NotImplementedError


class SileroVAD(VADEngine):
    provider: ClassVar[str] = "silero"
    Options = SileroOptions

    def __init__(self, options: SileroOptions | None = None) -> None:
        self.options = options or SileroOptions()
        self.model: SileroModel | None = None

    @property
    def path(self) -> Path:
        return Path(self.options.model_path) if self.options.model_path else bundled_file(*SILERO_VAD)

    async def initialize(self) -> None:
        from ..workers import get_pool

        path = self.path
        if not path.is_file():
            raise EngineError(f"VAD model file not found: {path}", code="ENGINE_UNAVAILABLE", status=503)
        self.model = await get_pool().run(load_silero, path, self.options.threads)
        self.model.batch_window_s = self.options.batch_window_ms / 1000

    async def health_check(self) -> Health:
        return Health(self.model is not None, "" if self.model else "model not loaded")

    def create_stream(self, params: VadParams | None = None) -> StreamingVAD:
        if self.model is None:
            raise EngineError("VAD model not loaded", code="ENGINE_UNAVAILABLE", status=503)
        return StreamingVAD(self.model, params or VadParams())

"""Smart Turn v3.2 (Pipecat's BSD-2 end-of-turn model) on onnxruntime: is the speaker done?

The ONNX file ships inside the `pipecat-ai` wheel (installed --no-deps, never imported: only the
file is used). Input: Whisper log-mel features of the last 8 s of the turn (features.py);
output: the probability that the turn is complete. One session per process (loaded on first
use, shared: onnxruntime's `run` is thread-safe), one intra-op thread, ~150 ms a call on a
shared core, always run on the bounded inference pool.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np

from ..bundled import SMART_TURN, bundled_file
from ..workers import get_pool
from .features import last_window, log_mel

COMPLETE_THRESHOLD = 0.5  # Pipecat's: probability > 0.5 is "complete"


class SmartTurnModel:
    def __init__(self, path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.path = path
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    def probability(self, audio: np.ndarray) -> float:
        """P(turn complete) for the turn's audio so far (16 kHz, int16 or float; any length: the
        newest 8 s are used). Blocking: call it on a worker."""
        features = log_mel(last_window(audio))[None, :, :]
        out = self._session.run(None, {self._input: features})[0]
        return float(np.asarray(out).reshape(-1)[0])


_models: dict[str, SmartTurnModel] = {}
_lock = threading.Lock()


def load_smart_turn(path: Path | None = None) -> SmartTurnModel:
    """The process-wide model (the bundled file unless `path`); loads once, blocking."""
    path = path or bundled_file(*SMART_TURN)
    with _lock:
        model = _models.get(str(path))
        if model is None:
            model = _models[str(path)] = SmartTurnModel(path)
        return model


_loading: asyncio.Future[SmartTurnModel] | None = None


async def smart_turn() -> SmartTurnModel:
    """The bundled model, loaded on the inference pool the first time any session asks."""
    global _loading
    if _models:
        return next(iter(_models.values()))
    loop = asyncio.get_running_loop()
    failed = _loading is not None and _loading.done() and (_loading.cancelled() or _loading.exception() is not None)
    if _loading is None or _loading.get_loop() is not loop or failed:
        _loading = asyncio.ensure_future(get_pool().run(load_smart_turn))
    return await asyncio.shield(_loading)


def preload() -> None:
    """Start loading the model in the background (a semantic_vad session opened: its first pause
    should not wait for the load). Call from the event loop."""
    if not _models:
        task = asyncio.get_running_loop().create_task(smart_turn())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # a failure shows at the first pause


async def turn_probability(audio: np.ndarray) -> float:
    """P(turn complete) computed off the event loop (features and model on one pool worker)."""
    model = await smart_turn()
    return await get_pool().run(model.probability, audio)

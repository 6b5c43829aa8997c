"""Offline fallback TTS for languages without a Piper voice in any wheel: espeak-ng (formant
synthesis, robotic but intelligible), by default its Mandarin voice.

Why a subprocess of the `espeak-ng` binary (Debian: `apt-get install espeak-ng`): piper-tts
bundles espeak-ng's data, but its `espeakbridge` only phonemizes (no synthesis), and the Debian
binary cannot read that newer data. Why `cmn-latn-pinyin` and not plain `cmn`: in espeak-ng 1.51
the plain voice reads its own pinyin (tone digits included) with English rules; the pinyin variant
speaks the same characters as Mandarin. The process runs outside the interpreter, so it needs no
inference-pool slot; the text goes in on stdin (never as an argument) and WAV comes out on stdout.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import ClassVar

import numpy as np
from pydantic import Field

from cozy_core.engines import EngineError, EngineOptions, EngineTimeout, Health

from ..audio.frames import PcmAudio
from .base import TTSEngine

RATE = 22050  # espeak-ng's output rate for every voice


class EspeakVoiceOptions(EngineOptions):
    voice: str = Field("cmn-latn-pinyin", min_length=1, pattern=r"^[A-Za-z0-9_+\-]+$")  # espeak-ng -v
    words_per_minute: int = Field(150, ge=80, le=450)  # espeak-ng -s at speed 1.0
    pitch: int = Field(50, ge=0, le=99)  # espeak-ng -p


class EspeakOptions(EngineOptions):
    binary: str = Field("espeak-ng", min_length=1)  # a name on PATH or a path
    voices: dict[str, EspeakVoiceOptions] = Field(default_factory=lambda: {"cmn": EspeakVoiceOptions()}, min_length=1)
    timeout_s: float = Field(20.0, gt=0)


def wav_samples(data: bytes) -> np.ndarray:
    """PCM16 samples of espeak-ng's WAV on stdout (its header sizes are placeholders when piped)."""
    at = data.find(b"data", 12)
    if not data.startswith(b"RIFF") or at < 0:
        raise EngineError("espeak-ng returned no WAV audio", code="ENGINE_ERROR", status=500)
    body = data[at + 8 :]
    return np.frombuffer(body[: len(body) - len(body) % 2], dtype="<i2").copy()


class EspeakTTS(TTSEngine):
    provider: ClassVar[str] = "espeak"
    Options = EspeakOptions

    def __init__(self, options: EspeakOptions | None = None) -> None:
        self.options = options or EspeakOptions()
        self._binary: str | None = None
        self._error = ""

    def voices(self) -> list[str]:
        return list(self.options.voices)

    def sample_rate(self, voice: str) -> int:
        return RATE

    async def initialize(self) -> None:
        """Find the binary and speak once per voice, so a missing voice fails at start, not mid-call."""
        self._binary = shutil.which(self.options.binary)
        if self._binary is None:
            self._error = f"espeak-ng not found ({self.options.binary!r}; Debian: apt-get install espeak-ng)"
            raise EngineError(self._error, code="ENGINE_UNAVAILABLE", status=503)
        for name in self.options.voices:
            try:
                await self.synthesize("你好。", voice=name)
            except EngineError as exc:
                self._error = f"espeak-ng voice {name!r}: {exc.message}"
                raise EngineError(self._error, code="ENGINE_UNAVAILABLE", status=503) from exc

    async def health_check(self) -> Health:
        ok = self._binary is not None and not self._error
        return Health(ok, self._error or ("" if ok else "not initialized"))

    async def synthesize(self, text: str, *, voice: str, speed: float = 1.0) -> PcmAudio:
        spec = self.options.voices.get(voice)
        if spec is None or self._binary is None:
            raise EngineError(f"espeak voice {voice!r} is not loaded", code="ENGINE_UNAVAILABLE", status=503)
        wpm = int(min(450, max(80, spec.words_per_minute * speed)))
        args = ["-v", spec.voice, "-s", str(wpm), "-p", str(spec.pitch), "--stdout"]
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(text.encode("utf-8")), self.options.timeout_s)
        except BaseException as exc:  # timeout or cancellation (barge-in): never leave the process behind
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if isinstance(exc, TimeoutError):
                raise EngineTimeout(f"espeak-ng took longer than {self.options.timeout_s} s") from exc
            raise
        if proc.returncode != 0:
            detail = err.decode("utf-8", "replace").strip()[:200]
            raise EngineError(f"espeak-ng failed ({proc.returncode}): {detail}", code="ENGINE_ERROR", status=500)
        return PcmAudio(wav_samples(out), RATE)

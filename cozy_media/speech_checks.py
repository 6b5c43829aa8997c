"""What a speech request may ask for: the deployment's limits and the checks against them.

Why apart from the service: every audio endpoint runs these before any work starts, so a bad
request is a clear 4xx and never a broken stream; they need the limits only, no engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cozy_core.errors import CozyError

from .audio.decode import UPLOAD_FORMATS
from .audio.encode import FORMATS, OutputFormat, output_format


@dataclass(frozen=True)
class SpeechLimits:
    max_upload_bytes: int = 25 * 1024 * 1024
    max_input_chars: int = 4096
    max_duration_s: float = 1800.0
    upload_formats: frozenset[str] = frozenset(UPLOAD_FORMATS)
    response_formats: frozenset[str] = frozenset(("mp3", "opus", "aac", "flac", "wav", "pcm"))
    min_speed: float = 0.25
    max_speed: float = 4.0


class RequestChecks:
    """Mixed into SpeechService; each check raises a 4xx CozyError that names the parameter."""

    limits: SpeechLimits

    def check_upload_size(self, size: int) -> None:
        if size > self.limits.max_upload_bytes:
            mb = self.limits.max_upload_bytes / (1024 * 1024)
            raise CozyError(
                f"file is larger than the {mb:.0f} MB limit", code="VALIDATION_FILE_TOO_LARGE", status=413, param="file"
            )

    def check_text(self, text: str, param: str = "input") -> str:
        if not isinstance(text, str) or not text.strip():
            raise CozyError(f"{param} must be non-empty text", code="VALIDATION_ERROR", status=400, param=param)
        if len(text) > self.limits.max_input_chars:
            raise CozyError(
                f"{param} is longer than {self.limits.max_input_chars} characters",
                code="VALIDATION_TEXT_TOO_LONG",
                status=400,
                param=param,
            )
        return text

    def check_format(self, name: str | None, param: str = "response_format") -> OutputFormat:
        spec = output_format(name or "mp3")
        allowed = self.limits.response_formats
        if spec is None or (spec.name not in allowed and name not in allowed):
            raise CozyError(
                f"unsupported {param} {name!r} (allowed: {', '.join(sorted(allowed))})",
                code="VALIDATION_AUDIO_FORMAT",
                status=400,
                param=param,
            )
        return spec

    def check_speed(self, speed: float | None) -> float:
        value = 1.0 if speed is None else float(speed)
        if not (self.limits.min_speed <= value <= self.limits.max_speed):
            raise CozyError(
                f"speed must be between {self.limits.min_speed} and {self.limits.max_speed}",
                code="VALIDATION_ERROR",
                status=400,
                param="speed",
            )
        return value


def unknown_formats(names: Iterable[str]) -> list[str]:
    """The names in `names` that are not output formats (for configuration checks)."""
    return [n for n in names if output_format(n) is None and n not in FORMATS]

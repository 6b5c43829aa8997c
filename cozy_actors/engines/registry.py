"""Provider registry: built-ins plus the `cozy.engines` entry-point group.

An entry point named `<kind>.<provider>` (or any name) must load an `Engine` subclass; its
`kind`/`provider` class attributes are authoritative. A provider whose `api_version` differs from
the interface version of its kind is refused with a clear error at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from cozy_core.engines import Engine, EngineOptions

log = logging.getLogger("cozy.engines")

ENTRY_POINT_GROUP = "cozy.engines"
# The interface version each engine kind currently speaks.
API_VERSIONS: dict[str, int] = {"llm": 1, "stt": 1, "tts": 1, "vad": 1, "knowledge": 1, "profile": 1, "memory": 1}


class RegistryError(Exception):
    """A provider cannot be registered or is unknown."""


class EngineRegistry:
    def __init__(self) -> None:
        self._providers: dict[tuple[str, str], type[Engine]] = {}

    def register(self, cls: type[Engine], *, source: str = "builtin") -> None:
        if not (isinstance(cls, type) and issubclass(cls, Engine)):
            raise RegistryError(f"{source}: {cls!r} is not an Engine subclass")
        if not cls.kind or not cls.provider:
            raise RegistryError(f"{source}: {cls.__qualname__} must set `kind` and `provider`")
        expected = API_VERSIONS.get(cls.kind)
        if expected is None:
            raise RegistryError(f"{source}: unknown engine kind {cls.kind!r} (known: {', '.join(API_VERSIONS)})")
        if cls.api_version != expected:
            raise RegistryError(
                f"{source}: provider {cls.kind}.{cls.provider} speaks api_version {cls.api_version}, "
                f"this server needs {expected}"
            )
        self._providers[(cls.kind, cls.provider)] = cls

    def load_entry_points(self, eps: Iterable[Any] | None = None) -> None:
        """Register every provider of the `cozy.engines` group; a bad one stops start-up."""
        for ep in eps if eps is not None else entry_points(group=ENTRY_POINT_GROUP):
            try:
                cls = ep.load()
            except Exception as exc:
                raise RegistryError(f"entry point {ep.name!r} ({ep.value}): cannot load: {exc}") from exc
            self.register(cls, source=f"entry point {ep.name!r} ({ep.value})")
            log.info("engine provider loaded", extra={"provider": f"{cls.kind}.{cls.provider}"})

    def get(self, kind: str, provider: str) -> type[Engine]:
        try:
            return self._providers[(kind, provider)]
        except KeyError:
            known = sorted(p for k, p in self._providers if k == kind)
            raise RegistryError(f"unknown {kind} provider {provider!r} (known: {', '.join(known)})") from None

    def providers(self, kind: str) -> list[str]:
        return sorted(p for k, p in self._providers if k == kind)

    def validate_options(self, kind: str, provider: str, options: dict[str, Any]) -> EngineOptions:
        """Parse a provider's options with its own schema; raises `ValidationError`."""
        return self.get(kind, provider).Options.model_validate(options)


def _speech_providers() -> list[type[Engine]]:
    """Built-in STT/TTS/VAD providers (their modules import no model library until used)."""
    from cozy_media.stt.remote import OpenAISTT
    from cozy_media.stt.whisper import FasterWhisperSTT
    from cozy_media.tts.espeak import EspeakTTS
    from cozy_media.tts.piper import PiperTTS
    from cozy_media.tts.remote import OpenAITTS
    from cozy_media.vad.silero import SileroVAD

    return [FasterWhisperSTT, OpenAISTT, PiperTTS, OpenAITTS, EspeakTTS, SileroVAD]


def default_registry(load_plugins: bool = True) -> EngineRegistry:
    """The built-in providers, plus entry-point plugins when enabled."""
    from .llm.local_provider import LocalLLM
    from .llm.openai_provider import OpenAILLM

    reg = EngineRegistry()
    reg.register(OpenAILLM)
    reg.register(LocalLLM)
    for cls in _speech_providers():
        reg.register(cls)
    from cozy_actors.context.build import context_providers

    for cls in context_providers():  # knowledge, profile, memory: postgres built-ins, Mem0/Memobase/Cognee
        reg.register(cls)
    if load_plugins:
        reg.load_entry_points()
    return reg


__all__ = [
    "API_VERSIONS",
    "ENTRY_POINT_GROUP",
    "EngineRegistry",
    "RegistryError",
    "ValidationError",
    "default_registry",
]

"""Language routes of the speech service: which service hears and speaks a language or a voice.

Why a route is a whole SpeechService and not just another engine: it carries its own settings
(default language and voice, OpenAI voice aliases), so a caller that picked it (the realtime
actor, by the personality's `voice.language`) uses it exactly like the default one. A route is
started on first use only, so a server that never hears Mandarin never loads the zh pack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .speech import SpeechService


class LanguageRouting:
    """Mixed into SpeechService; `routes` maps a language code to its service."""

    routes: dict[str, SpeechService]
    _shared: frozenset[str]

    def for_language(self, language: str | None) -> SpeechService:
        """The service that speaks and hears `language` ("zh", "zh-CN"): its route, started on first
        use, or this one when the language has none."""
        route = self.routes.get((language or "").split("-")[0].lower()) if self.routes else None
        if route is None:
            return self  # type: ignore[return-value]
        route.start()
        return route

    async def load_language(self, language: str | None) -> SpeechService:
        """`for_language`, once its models are in (a failure stays in the route's `require`)."""
        service = self.for_language(language)
        await service.loaded()
        return service

    def voice_owner(self, voice: str) -> SpeechService:
        """The service whose own TTS has `voice` (zh's `cmn` on /v1/audio/speech), else this one."""
        for route in self.routes.values():
            if "tts" not in route._shared and route.tts is not None and voice in route.tts.voices():
                own = getattr(self, "tts", None)
                if own is None or voice not in own.voices():
                    return route
        return self  # type: ignore[return-value]

    async def load_voice(self, voice: str) -> None:
        """Start and wait for the route that owns `voice`, when it is a route's."""
        owner = self.voice_owner(voice)
        if owner is not self:
            owner.start()
            await owner.loaded()

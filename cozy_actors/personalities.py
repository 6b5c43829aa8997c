"""Personalities: one YAML file each (data, not code), validated as a whole before use.

Loading is all-or-nothing: `PersonalityStore.reload()` parses every file first and swaps the set
only when all are valid, so a bad edit never takes a working personality away.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonalityLLM(_Strict):
    model: str | None = None  # a configured model id; None = the server default
    provider: str | None = None  # pick the first enabled model of this provider when `model` is unset
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)


class MemoryPolicy(_Strict):
    enabled: bool = True
    use_personalization: bool = True
    max_history_messages: int = Field(50, ge=0)


class VoicePolicy(_Strict):
    voice: str = "joe"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    language: str = "en"
    # Cancel the echo of the reply in the caller's input (cozy_media/audio/echo.py): "auto" is on for
    # WebRTC/FastRTC calls (the server owns playback) and off on the WebSocket (the client may run its
    # own AEC; `?cozy_echo_cancellation=on` turns it on there). Off by default for now: during double
    # talk AEC3 still mutes part of the caller's words (a short "yeah" over the reply went unheard,
    # and on a loaded machine a real barge-in over WebRTC was missed about 1 run in 4), and barge-in
    # must not regress for callers on headsets; speakerphone deployments opt in.
    echo_cancellation: Literal["auto", "on", "off"] = "off"
    # Start the reply's model call at the speaker's pause, with the words decoded so far; the reply
    # uses it if the turn ends with those words (conversation/primed.py). Costs one model call per
    # pause that was not the end of the turn; off for a metered or slow shared model.
    preemptive_generation: bool = True


class InterruptionPolicy(_Strict):
    """How user speech over a reply is handled (see cozy_actors/realtime/interruption.py)."""

    mode: Literal["pause", "cancel"] = "pause"  # where the server controls playback (WebRTC, /ui)
    min_words: int = Field(2, ge=1, le=20)  # fewer words than this never cut a reply off
    min_speech_ms: int = Field(300, ge=0, le=5000)  # shorter bursts are noise
    resume_after_ms: int = Field(1500, ge=100, le=10000)  # undecided this long: the reply resumes
    backchannels: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(None, max_length=100)
    # None: the built-in list for voice.language (en, zh); [] : no word is a backchannel


class Personality(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = Field(min_length=1)
    version: str = "1"
    description: str = ""
    system_prompt: str = Field(min_length=1)
    llm: PersonalityLLM = PersonalityLLM()
    tools: list[str] = []
    memory: MemoryPolicy = MemoryPolicy()
    voice: VoicePolicy = VoicePolicy()
    interruption: InterruptionPolicy = InterruptionPolicy()

    def public(self) -> dict[str, Any]:
        """What GET /v1/personalities shows (the prompt is the operator's, not the caller's)."""
        return {
            "id": self.id,
            "object": "personality",
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "model": self.llm.model,
            "tools": self.tools,
            "voice": self.voice.model_dump(),
        }


class PersonalityError(Exception):
    """One or more personality files are invalid; `problems` are `file: key: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def load_personalities(directory: Path) -> dict[str, Personality]:
    """Parse every `*.yaml` in `directory`; raise `PersonalityError` listing all problems."""
    if not directory.is_dir():
        raise PersonalityError([f"{directory}: -: personalities directory not found"])
    found: dict[str, Personality] = {}
    problems: list[str] = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append(f"{path}: -: invalid YAML: {getattr(exc, 'problem', exc)}")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{path}: -: expected a mapping")
            continue
        try:
            p = Personality.model_validate(raw)
        except ValidationError as exc:
            problems.extend(f"{path}: {'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}" for e in exc.errors())
            continue
        if p.id != path.stem:
            problems.append(f"{path}: id: {p.id!r} must match the file name {path.stem!r}")
        elif p.id in found:
            problems.append(f"{path}: id: duplicate personality id {p.id!r}")
        else:
            found[p.id] = p
    if not found and not problems:
        problems.append(f"{directory}: -: no personality files")
    if problems:
        raise PersonalityError(problems)
    return found


class PersonalityStore:
    def __init__(self, directory: Path, default_id: str) -> None:
        self.directory = directory
        self.default_id = default_id
        self._items: dict[str, Personality] = {}

    def reload(self) -> dict[str, Personality]:
        """Validate every file, then swap; on error nothing changes."""
        items = load_personalities(self.directory)
        if self.default_id not in items:
            raise PersonalityError([f"{self.directory}: -: default personality {self.default_id!r} not found"])
        self._items = items
        return items

    def get(self, personality_id: str | None) -> Personality | None:
        return self._items.get(personality_id or self.default_id)

    def all(self) -> list[Personality]:
        return [self._items[k] for k in sorted(self._items)]

"""The Realtime session configuration (GA shape), its defaults and `session.update` merging.

Validated with pydantic so a bad `session.update` becomes an `error` event naming the field,
and the session keeps its previous configuration.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .client_events import describe
from .items import RealtimeError

AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")


class _Model(BaseModel):
    # Unknown fields are refused (an `unknown_parameter` error naming them), so nested garbage is
    # never stored and echoed back in every session.updated; strict: `true` is not the number 1.
    model_config = ConfigDict(extra="forbid", strict=True)


class AudioFormat(_Model):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: int | None = 24000

    def bytes_per_ms(self) -> float:
        return 48.0 if self.type == "audio/pcm" else 8.0


class ServerVad(_Model):
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, ge=0, le=10000)
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = None
    eagerness: str | None = None


class Transcription(_Model):
    model: str = "whisper-1"
    language: str | None = None
    prompt: str | None = None


class AudioInput(_Model):
    format: AudioFormat = AudioFormat()
    transcription: Transcription | None = None
    noise_reduction: dict[str, Any] | None = None
    turn_detection: ServerVad | None = ServerVad()


class AudioOutput(_Model):
    format: AudioFormat = AudioFormat()
    voice: str | dict[str, Any] = "alloy"
    speed: float = Field(1.0, ge=0.25, le=4.0)


class Audio(_Model):
    input: AudioInput = AudioInput()
    output: AudioOutput = AudioOutput()


class FunctionTool(_Model):
    type: Literal["function"] = "function"
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class SessionConfig(_Model):
    type: Literal["realtime", "transcription"] = "realtime"
    model: str = ""
    instructions: str = ""
    output_modalities: list[Literal["audio", "text"]] = Field(["audio"], min_length=1)
    audio: Audio = Audio()
    tools: list[FunctionTool] = []
    tool_choice: str | dict[str, Any] = "auto"
    max_output_tokens: Annotated[int, Field(ge=1)] | Literal["inf"] = "inf"
    # GA session fields CozyEngine accepts and echoes but does not act on (as before this model
    # refused unknown fields): clients such as the Agents SDK send them.
    include: list[str] | None = None
    parallel_tool_calls: bool | None = None
    prompt: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    tracing: str | dict[str, Any] | None = None
    truncation: str | dict[str, Any] | None = None

    def merged(self, update: dict[str, Any], where: str = "session") -> SessionConfig:
        """A new config with only the fields present in `update` changed (nested dicts merge).

        A bad value raises a RealtimeError naming it from the client's side (`where` is the
        event field that carried the update: "session" or "response")."""
        current = self.model_dump(mode="json")
        try:
            return SessionConfig.model_validate(_merge(current, update))
        except ValidationError as exc:
            message, code, param = describe(exc)
            raise RealtimeError(message.replace(f"'{param}'", f"'{where}.{param}'"), code, f"{where}.{param}") from None

    def wire(self, session_id: str) -> dict[str, Any]:
        return {"object": "realtime.session", "id": session_id, **self.model_dump(mode="json")}

    def client_tools(self) -> list[dict[str, Any]]:
        """The session's tools in chat-completions shape (what the Turn offers the model)."""
        return [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description or "",
                    "parameters": t.parameters or {"type": "object", "properties": {}},
                },
            }
            for t in self.tools
        ]


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out

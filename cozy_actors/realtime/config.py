"""The Realtime session configuration (GA shape), its defaults and `session.update` merging.

Validated with pydantic so a bad `session.update` becomes an `error` event naming the field,
and the session keeps its previous configuration.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from cozy_media.audio import denoise

from .client_events import describe
from .items import RealtimeError

AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")


class _Model(BaseModel):
    # Unknown fields are refused (an `unknown_parameter` error naming them), so nested garbage is
    # never stored and echoed back in every session.updated; strict: `true` is not the number 1.
    model_config = ConfigDict(extra="forbid", strict=True)


class AudioFormat(_Model):
    """PCM16 at 24 kHz, or G.711 at 8 kHz: the only rates the pipeline is built for, so another
    `rate` is refused rather than read as 24 kHz (a format update replaces the whole format)."""

    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: int | None = None  # filled in: 24000 or 8000

    @model_validator(mode="after")
    def _rate(self) -> AudioFormat:
        wanted = 24000 if self.type == "audio/pcm" else 8000
        if self.rate is not None and self.rate != wanted:
            raise ValueError(f"rate {self.rate} is not supported for {self.type}: only {wanted}")
        self.rate = wanted
        return self

    def bytes_per_ms(self) -> float:
        return 48.0 if self.type == "audio/pcm" else 8.0


class ServerVad(_Model):
    """Silence ends the turn; `idle_timeout_ms` prompts a reply when the user stays silent."""

    type: Literal["server_vad"] = "server_vad"
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    prefix_padding_ms: int = Field(300, ge=0, le=5000)
    silence_duration_ms: int = Field(500, ge=0, le=10000)
    create_response: bool = True
    interrupt_response: bool = True
    idle_timeout_ms: int | None = Field(None, ge=1)  # idle.py; GA documents no bounds


class SemanticVad(_Model):
    """A model (Smart Turn, cozy_media/turn) decides at each pause whether the user is done; the
    eagerness caps the wait (low 8 s, medium 4 s, high 2 s, auto = medium). GA has no threshold,
    padding or silence for it: those are refused as unknown parameters."""

    type: Literal["semantic_vad"] = "semantic_vad"
    eagerness: Literal["low", "medium", "high", "auto"] = "auto"
    create_response: bool = True
    interrupt_response: bool = True


TurnDetection = Annotated[ServerVad | SemanticVad, Field(discriminator="type")]


TRANSCRIPTION_MODELS = frozenset(
    {
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-4o-transcribe-latest",
        "gpt-realtime-whisper",  # Pipecat 1.14's InputAudioTranscription() default
        "local",
    }
)
"""OpenAI's transcription model names: each one selects the bundled streaming STT engine (the only
one a session has); another name is refused instead of being silently replaced."""


class Transcription(_Model):
    model: str = "whisper-1"
    language: str | None = None
    prompt: str | None = None
    # Refused unless null (no latency/accuracy knob or keyword list on the bundled engine), and left
    # out of the echoed session: Pipecat 1.14 builds its InputAudioTranscription from the echo with
    # an __init__ that takes only model/language/prompt, and any other key killed its session.
    delay: None = Field(None, exclude=True)
    keywords: None = Field(None, exclude=True)
    languages: None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _known(self) -> Transcription:
        base = self.model.rsplit("-20", 1)[0] if self.model.startswith("gpt-4o") else self.model
        if base not in TRANSCRIPTION_MODELS:
            raise ValueError(f"model {self.model!r} is not available; use one of {sorted(TRANSCRIPTION_MODELS)}")
        return self


class NoiseReduction(_Model):
    """RNNoise on the input (cozy_media/audio/denoise.py); it has one model, so near and far field
    run the same suppressor. Refused when the pyrnnoise wheel is not installed."""

    type: Literal["near_field", "far_field"]

    @model_validator(mode="after")
    def _installed(self) -> NoiseReduction:
        if not denoise.available():
            raise ValueError("noise reduction is not available: the pyrnnoise wheel is not installed")
        return self


class AudioInput(_Model):
    format: AudioFormat = AudioFormat()
    transcription: Transcription | None = Transcription()  # null: no transcription events
    noise_reduction: NoiseReduction | None = None
    turn_detection: TurnDetection | None = ServerVad()


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


class ToolChoiceFunction(_Model):
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")


class TracingConfig(_Model):
    workflow_name: str | None = None
    group_id: str | None = None
    metadata: dict[str, Any] | None = None


class SessionConfig(_Model):
    type: Literal["realtime"] = "realtime"  # transcription sessions are refused (not a different pipeline here)
    model: str = ""
    instructions: str = ""
    output_modalities: list[Literal["audio", "text"]] = Field(["audio"], min_length=1)
    audio: Audio = Audio()
    tools: list[FunctionTool] = []
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceFunction = "auto"
    max_output_tokens: Annotated[int, Field(ge=1)] | Literal["inf"] = "inf"
    # Each GA field either acts or is refused (conformance.SESSION_FIELDS says which and how):
    # tracing writes a `realtime.trace` log record per response; truncation "auto" trims history
    # as text chat does, "disabled" sends it all; the rest only take their "off" value.
    include: Annotated[list[str], Field(max_length=0)] | None = None  # no transcription logprobs
    parallel_tool_calls: Literal[True] | None = None  # the model may always call several tools
    prompt: None = None  # no stored prompt templates here
    reasoning: None = None  # the chat engine's model has no reasoning setting here
    tracing: Literal["auto"] | TracingConfig | None = None
    truncation: Literal["auto", "disabled"] = "auto"

    @field_validator("tool_choice")
    @classmethod
    def _forced_tool_exists(cls, tc: Any, info: ValidationInfo) -> Any:
        if isinstance(tc, ToolChoiceFunction) and tc.name not in {t.name for t in info.data.get("tools") or ()}:
            raise ValueError(f"the forced function {tc.name!r} is not among the session's tools")
        return tc

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

    def chat_tool_choice(self) -> str | dict[str, Any] | None:
        """`tool_choice` as chat completions take it (a forced function is nested there)."""
        if not self.tools:
            return None
        tc = self.tool_choice
        if isinstance(tc, ToolChoiceFunction):
            return {"type": "function", "function": {"name": tc.name}}
        return tc

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
        if key in _REPLACED:  # a new format/tool choice/tracing is a whole value, not a patch
            out[key] = value
        elif key == "turn_detection" and _other_kind(out.get(key), value):
            out[key] = value  # server_vad <-> semantic_vad: the new kind's defaults, not the old one's fields
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_REPLACED = frozenset({"format", "tool_choice", "tracing"})


def _other_kind(current: Any, update: Any) -> bool:
    return (
        isinstance(current, dict)
        and isinstance(update, dict)
        and update.get("type", current.get("type")) != current.get("type")
    )

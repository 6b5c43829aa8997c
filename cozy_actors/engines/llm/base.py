"""The LLM engine interface: a stream of typed events for one chat request.

Events rather than provider chunks so the Turn (text or voice) never depends on a provider's wire
format; `LLMToolCallDelta` mirrors OpenAI's fragments (id/name only on the first one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from cozy_core.engines import Engine


@dataclass(slots=True)
class LLMRequest:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    temperature: float | None = None
    max_tokens: int | None = None
    # Other OpenAI sampling fields (top_p, stop, seed, penalties, response_format, ...), passed through.
    extra: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None  # quota key of the caller (a single-lane engine limits each owner's queue)


@dataclass(slots=True)
class LLMTextDelta:
    text: str


@dataclass(slots=True)
class LLMToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class LLMUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class LLMFinish:
    reason: str  # stop | length | tool_calls | content_filter


LLMEvent = LLMTextDelta | LLMToolCallDelta | LLMUsage | LLMFinish


class LLMEngine(Engine):
    kind: ClassVar[str] = "llm"
    api_version: ClassVar[int] = 1
    supports_tools: ClassVar[bool] = True
    single_lane: ClassVar[bool] = False  # one generation at a time: callers queue (per-user queue quota)

    @property
    def max_tokens_limit(self) -> int | None:
        """The largest max_tokens a client may ask for (None: no ceiling here; the upstream decides)."""
        return None

    def __init__(self, model_id: str, options: Any) -> None:
        self.model_id = model_id
        self.options = options

    def stream_chat(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        """Stream one completion. Cancelling the iteration must stop generation promptly."""
        raise NotImplementedError

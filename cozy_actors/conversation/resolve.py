"""Which personality, model and tools a turn gets: one rule set for text chat and voice."""

from __future__ import annotations

from dataclasses import dataclass

from cozy_actors.engines.llm.base import LLMEngine
from cozy_actors.engines.llm.router import LLMRouter
from cozy_actors.engines.tools.base import Tool, ToolCatalog
from cozy_actors.personalities import Personality, PersonalityStore
from cozy_core.errors import NotFound


@dataclass(frozen=True)
class Resolved:
    personality: Personality
    model: str
    engine: LLMEngine
    server_tools: dict[str, Tool]


async def resolve(
    personalities: PersonalityStore,
    llms: LLMRouter,
    catalog: ToolCatalog,
    *,
    personality_id: str | None,
    model: str | None,
    allowed_tools: list[str] | None = None,
    param: str = "cozy.personality_id",
) -> Resolved:
    """Personality (404 if unknown), the model (requested if configured, else the personality's,
    else the default), and the server tools offered (allowlist ∩ request ∩ side-effect policy)."""
    personality = personalities.get(personality_id)
    if personality is None:
        raise NotFound(f"unknown personality {personality_id!r}", param=param)
    model_id = llms.choose(model, personality.llm.model, personality.llm.provider)
    engine = await llms.engine(model_id)
    offered = catalog.offered(personality.tools, allowed_tools)
    return Resolved(personality, model_id, engine, {t.name: t for t in offered})

"""Builds the ContextService from `config/context.yaml` through the engine registry.

Every context engine is constructed as `cls(options, db=database)`: built-ins use the server's
PostgreSQL, HTTP adapters (Mem0, Memobase, Cognee) and plugins ignore `db`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from cozy_actors.config.models import ContextConfig
from cozy_actors.engines.registry import EngineRegistry, RegistryError

from .service import ContextService


class ContextConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def context_providers() -> list[type[Any]]:
    """Built-in knowledge/profile/memory providers registered in the default registry."""
    from .adapters import ADAPTERS
    from .postgres import PgKnowledge, PgMemory, PgProfile

    return [PgKnowledge, PgMemory, PgProfile, *ADAPTERS]


def build_context(config: ContextConfig, registry: EngineRegistry, *, db: Any, queue: Any) -> ContextService:
    """Resolve and construct the enabled engines; raises ContextConfigError listing every problem."""
    problems: list[str] = []
    engines: dict[str, Any] = {}
    for kind in ("knowledge", "profile", "memory"):
        section = getattr(config, kind)
        if not section.enabled:
            continue
        try:
            options = registry.validate_options(kind, section.provider, section.options)
            engines[kind] = registry.get(kind, section.provider)(options, db=db)  # type: ignore[call-arg]
        except RegistryError as exc:
            problems.append(f"{kind}.provider: {exc}")
        except ValidationError as exc:
            for err in exc.errors():
                loc = "".join(f".{p}" for p in err["loc"])  # empty for a check across fields
                problems.append(f"{kind}.options{loc}: {err['msg']}")
    if problems:
        raise ContextConfigError(problems)
    return ContextService(config, queue=queue, **engines)

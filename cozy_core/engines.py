"""What every engine provider shares: lifecycle, health, and an interface version.

`api_version` lets the registry refuse a third-party provider built against another interface at
start-up, with a clear error, instead of failing in the middle of a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from cozy_core.errors import CozyError


def blank_to_none(value: Any) -> Any:
    """`${VAR:-}` in config substitutes to ''; for an optional setting that means "not set".
    Use as `Annotated[SecretStr | None, BeforeValidator(blank_to_none)]`."""
    return None if isinstance(value, str) and not value.strip() else value


class EngineOptions(BaseModel):
    """Base for a provider's options schema (the `options:` mapping in config)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""


class Engine:
    """Base class of every engine provider."""

    kind: ClassVar[str] = ""
    provider: ClassVar[str] = ""
    api_version: ClassVar[int] = 0
    Options: ClassVar[type[EngineOptions]] = EngineOptions

    async def initialize(self) -> None:
        """Acquire resources (clients, models). Called once before use."""

    async def health_check(self) -> Health:
        return Health(True)

    async def close(self) -> None:
        """Release resources. Must be safe to call twice."""


class EngineError(CozyError):
    """An engine call failed; `code` is the CozyEngine error code the edge reports (502 by default)."""

    def __init__(self, message: str, *, code: str = "ENGINE_ERROR", status: int = 502, retryable: bool = False) -> None:
        super().__init__(message, code=code, status=status)
        self.retryable = retryable


class EngineTimeout(EngineError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="ENGINE_TIMEOUT", status=504, retryable=True)


def describe(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"

"""Shared plumbing of the OpenAI-compatible remote speech providers (one httpx client each)."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import Field, SecretStr, field_validator

from cozy_core.engines import EngineError, EngineOptions, EngineTimeout, Health


class RemoteOptions(EngineOptions):
    base_url: str = Field(min_length=1, pattern=r"^https?://")
    api_key: SecretStr | None = None
    model: str = Field(min_length=1)
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value


def make_client(options: RemoteOptions) -> httpx.AsyncClient:
    headers = {}
    if options.api_key:
        headers["authorization"] = f"Bearer {options.api_key.get_secret_value()}"
    return httpx.AsyncClient(
        base_url=options.base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s),
    )


def upstream_error(exc: Exception, what: str) -> EngineError:
    """Map a transport or HTTP failure of the upstream to ENGINE_* (502/504)."""
    if isinstance(exc, httpx.TimeoutException):
        return EngineTimeout(f"{what}: upstream timed out")
    if isinstance(exc, httpx.HTTPStatusError):
        try:
            detail = exc.response.text[:300]
        except httpx.ResponseNotRead:
            detail = ""
        return EngineError(f"{what}: upstream answered {exc.response.status_code} {detail}".strip(),
                           code="ENGINE_UPSTREAM_ERROR", status=502)
    return EngineError(f"{what}: upstream unreachable ({type(exc).__name__})", code="ENGINE_UNAVAILABLE", status=502)


class RemoteClient:
    """The HTTP client lifecycle every remote speech provider shares (mix in before the engine base)."""

    options: RemoteOptions
    what = "remote engine"
    _client: httpx.AsyncClient | None = None

    async def initialize(self) -> None:
        self._client = make_client(self.options)

    async def health_check(self) -> Health:
        return Health(self._client is not None, "" if self._client else "not initialized")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise EngineError(f"{self.what} not initialized", code="ENGINE_UNAVAILABLE", status=503)
        return self._client

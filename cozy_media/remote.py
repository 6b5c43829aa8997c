"""Shared plumbing of the OpenAI-compatible remote speech providers (one pooled client each).

Why aiohttp and not httpx here: remote STT/TTS sit on the voice hot path (one request per
sentence of every reply, for every call); httpx cost 10-16 ms of CPU per request on this machine,
aiohttp about a tenth of that, the same reason the LLM provider uses it. `upstream_error` still
maps httpx failures too, for the HTTP personalization adapters.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx
from pydantic import Field, SecretStr, field_validator

from cozy_core.engines import EngineError, EngineOptions, EngineTimeout, Health, blank_to_none


class RemoteOptions(EngineOptions):
    base_url: str = Field(min_length=1, pattern=r"^https?://")
    api_key: SecretStr | None = None
    model: str = Field(min_length=1)
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    max_connections: int = Field(64, ge=1)

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return blank_to_none(value)


class UpstreamStatus(Exception):
    """The upstream answered with an error status (aiohttp leaves the body to us)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status} {detail}")
        self.status = status
        self.detail = detail


def upstream_error(exc: BaseException, what: str) -> EngineError:
    """Map a transport or HTTP failure of the upstream to ENGINE_* (502/504)."""
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return EngineTimeout(f"{what}: upstream timed out")
    status, detail = None, ""
    if isinstance(exc, UpstreamStatus):
        status, detail = exc.status, exc.detail
    elif isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        try:
            detail = exc.response.text[:300]
        except httpx.ResponseNotRead:
            detail = ""
    if isinstance(exc, ValueError):
        return EngineError(f"{what}: upstream sent an invalid answer ({exc})", code="ENGINE_UPSTREAM_ERROR", status=502)
    if status is not None:
        return EngineError(
            f"{what}: upstream answered {status} {detail}".strip(), code="ENGINE_UPSTREAM_ERROR", status=502
        )
    return EngineError(f"{what}: upstream unreachable ({type(exc).__name__})", code="ENGINE_UNAVAILABLE", status=502)


class RemoteClient:
    """The HTTP client lifecycle every remote speech provider shares (mix in before the engine base)."""

    options: RemoteOptions
    what = "remote engine"
    _session: aiohttp.ClientSession | None = None

    async def initialize(self) -> None:
        opts = self.options
        headers = {"authorization": f"Bearer {opts.api_key.get_secret_value()}"} if opts.api_key else {}
        self._base = opts.base_url.rstrip("/") + "/"
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=opts.max_connections, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=opts.timeout_s, sock_connect=opts.connect_timeout_s),
        )

    async def health_check(self) -> Health:
        return Health(self._session is not None, "" if self._session else "not initialized")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, path: str, what: str, **kwargs: Any) -> bytes:
        """POST to `base_url/path`; the body, or EngineError naming `what` failed."""
        if self._session is None:
            raise EngineError(f"{self.what} not initialized", code="ENGINE_UNAVAILABLE", status=503)
        try:
            async with self._session.post(self._base + path, **kwargs) as response:
                body = await response.read()
                if response.status >= 400:
                    raise UpstreamStatus(response.status, body[:300].decode("utf-8", "replace"))
                return body
        except (aiohttp.ClientError, TimeoutError, UpstreamStatus) as exc:
            raise upstream_error(exc, what) from exc

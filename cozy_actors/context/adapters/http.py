"""What the HTTP personalization adapters (Mem0, Memobase, Cognee) share: one pooled aiohttp session
per engine, a per-request timeout, and every transport or HTTP failure turned into an `EngineError`.

Why aiohttp: these calls run on every turn (knowledge, profile and memory fetches), on the event
loop that also paces audio; `httpx.AsyncClient` measured 10-16 ms of CPU per request at 50
concurrent requests on this machine (benchmarks/README.md), the reason the LLM provider and the
remote speech providers use aiohttp too.

Why errors and not empty results: the ContextService turns a failed search into a `degraded` reason
(the reply still goes out), and the update queue retries a failed batch. Swallowing errors here
would hide an outage of the memory service from both.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import aiohttp
import orjson
from pydantic import BeforeValidator, Field, SecretStr

from cozy_core.engines import EngineError, EngineOptions, EngineTimeout, Health, blank_to_none

from ..base import ContextItem, content_text


class HttpOptions(EngineOptions):
    """Connection options common to every HTTP adapter; `api_key` must come from the environment."""

    base_url: str = Field(min_length=1, pattern=r"^https?://")
    api_key: Annotated[SecretStr | None, BeforeValidator(blank_to_none)] = None
    # Per request. A turn's fetch is bounded separately (context.yaml `*_timeout_s`); updates run in
    # the background queue, so they may take longer than a turn could wait.
    timeout_s: float = Field(10.0, gt=0)
    connect_timeout_s: float = Field(3.0, gt=0)
    max_connections: int = Field(32, ge=1)


class HttpAdapter:
    """Client lifecycle and calls; mix in before the engine contract (`class X(HttpAdapter, MemoryEngine)`)."""

    Options: ClassVar[type[HttpOptions]] = HttpOptions
    service: ClassVar[str] = "http"  # names the upstream in errors: "mem0 search: upstream answered 500"

    def __init__(self, options: HttpOptions | None = None, *, db: Any = None) -> None:
        # `db` is the server's PostgreSQL, passed to every context engine; remote services do not use it.
        self.options: Any = options if options is not None else self.Options()  # type: ignore[call-arg]
        self._session: aiohttp.ClientSession | None = None
        self._base = ""

    def health_path(self) -> str | None:
        """A cheap GET that proves the service answers and accepts the key, if it has one."""
        return None

    def auth_headers(self) -> dict[str, str]:
        """The service's authentication header(s) for `options.api_key` (none without a key)."""
        return {}

    async def initialize(self) -> None:
        if self._session is not None:
            return
        opts: HttpOptions = self.options
        self._base = opts.base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            headers={"accept": "application/json", **self.auth_headers()},
            connector=aiohttp.TCPConnector(limit=opts.max_connections, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=opts.timeout_s, sock_connect=opts.connect_timeout_s),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def health_check(self) -> Health:
        if self._session is None:
            return Health(False, "not initialized")
        path = self.health_path()
        if path is None:
            return Health(True, "configured")
        try:
            await self.call("GET", path, op="health")
        except EngineError as exc:
            return Health(False, exc.message)
        return Health(True)

    async def call(
        self,
        method: str,
        path: str,
        *,
        op: str,
        json: Any = None,
        params: dict[str, Any] | list[tuple[str, Any]] | None = None,
        form: aiohttp.FormData | None = None,
        missing_ok: bool = False,
    ) -> Any:
        """One request to `base_url + path`; returns the decoded JSON body (None when the body is
        empty, or on a 404 with `missing_ok`)."""
        if self._session is None:
            raise EngineError(f"{self.service} engine is not initialized", code="ENGINE_UNAVAILABLE", status=503)
        what = f"{self.service} {op}"
        try:
            async with self._session.request(method, self._base + path, json=json, params=params, data=form) as resp:
                status, body = resp.status, await resp.read()
        except TimeoutError as exc:
            raise EngineTimeout(f"{what}: upstream timed out") from exc
        except aiohttp.ClientError as exc:
            raise EngineError(
                f"{what}: upstream unreachable ({type(exc).__name__})", code="ENGINE_UNAVAILABLE", status=502
            ) from exc
        if missing_ok and status == 404:
            return None
        if status >= 400:
            detail = body[:300].decode("utf-8", "replace")
            raise EngineError(f"{what}: upstream answered {status} {detail}".strip(), code="ENGINE_UPSTREAM_ERROR")
        if not body:
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise EngineError(f"{what}: upstream answered non-JSON", code="ENGINE_UPSTREAM_ERROR") from exc


def chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The user/assistant turns as plain `{"role", "content"}` text, the shape all three services take."""
    out = []
    for m in messages:
        text = content_text(m.get("content")).strip()
        if m.get("role") in ("user", "assistant") and text:
            out.append({"role": str(m["role"]), "content": text})
    return out


def ranked(source: str, texts: list[str], limit: int) -> list[ContextItem]:
    """ContextItems in the service's order (score 1, 1/2, 1/3 ...), duplicates and blanks dropped."""
    seen = list(dict.fromkeys(t.strip() for t in texts if t and t.strip()))[:limit]
    return [ContextItem(source, t, 1.0 / (i + 1)) for i, t in enumerate(seen)]

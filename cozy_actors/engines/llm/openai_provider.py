"""OpenAI-compatible upstream (OpenAI, Ollama, vLLM, LM Studio): chat completions over HTTP/SSE.

Why aiohttp and not the `openai` SDK here: this is the proxy hot path, and the SDK's stack
(httpx + typed request transforms + a pydantic object per chunk) measured 5-19 ms of CPU per
request on this 2-core machine (benchmarks/chat_overhead.py, see benchmarks/README.md), which
alone exceeds the overhead budget. The wire protocol is the same; chunks are parsed with orjson.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiohttp
import orjson
from pydantic import Field, SecretStr, field_validator

from cozy_core.engines import EngineError, EngineOptions, EngineTimeout, Health, blank_to_none

from .base import LLMEngine, LLMEvent, LLMFinish, LLMRequest, LLMTextDelta, LLMToolCallDelta, LLMUsage

_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class OpenAIOptions(EngineOptions):
    base_url: str = Field(min_length=1, pattern=r"^https?://")
    api_key: SecretStr | None = None
    model: str = Field(min_length=1)
    timeout_s: float = Field(120.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    max_retries: int = Field(0, ge=0, le=5)
    max_connections: int = Field(256, ge=1)
    organization: str | None = None

    @field_validator("api_key", "organization", mode="before")
    @classmethod
    def _blank(cls, value: Any) -> Any:
        return blank_to_none(value)


class OpenAILLM(LLMEngine):
    provider: ClassVar[str] = "openai"
    Options = OpenAIOptions

    def __init__(self, model_id: str, options: OpenAIOptions) -> None:
        super().__init__(model_id, options)
        self._session: aiohttp.ClientSession | None = None
        self._url = options.base_url.rstrip("/") + "/chat/completions"

    async def initialize(self) -> None:
        opts: OpenAIOptions = self.options
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if opts.api_key:
            headers["authorization"] = f"Bearer {opts.api_key.get_secret_value()}"
        if opts.organization:
            headers["openai-organization"] = opts.organization
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(limit=opts.max_connections, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=opts.timeout_s, sock_connect=opts.connect_timeout_s),
            auto_decompress=True,
        )

    async def health_check(self) -> Health:
        # Configured is healthy: probing a paid upstream on every /ready would cost money and time.
        return Health(self._session is not None, "" if self._session else "not initialized")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _body(self, request: LLMRequest) -> bytes:
        body: dict[str, Any] = {
            "model": self.options.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **request.extra,
        }
        if request.tools:
            body["tools"] = request.tools
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        return orjson.dumps(body)

    async def stream_chat(self, request: LLMRequest) -> AsyncIterator[LLMEvent]:
        if self._session is None:
            raise EngineError(f"model {self.model_id} is not initialized", code="ENGINE_UNAVAILABLE", status=503)
        data = self._body(request)
        attempt = 0
        while True:
            started = False
            try:
                async with self._session.post(self._url, data=data) as resp:
                    if resp.status >= 400:
                        raise await _status_error(self.model_id, resp)
                    async for raw in resp.content:
                        if not raw.startswith(b"data:"):
                            continue
                        payload = raw[5:].strip()
                        if payload == b"[DONE]":
                            return
                        for event in _events(orjson.loads(payload)):
                            started = True
                            yield event
                return
            except EngineError as exc:
                if started or attempt >= self.options.max_retries or exc.status not in _RETRY_STATUS:
                    raise
            except TimeoutError as exc:
                raise EngineTimeout(f"upstream model {self.model_id} timed out") from exc
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError) as exc:
                if started or attempt >= self.options.max_retries:
                    raise EngineError(
                        f"upstream model {self.model_id} unreachable or broke off: {exc}",
                        code="ENGINE_UNAVAILABLE" if not started else "ENGINE_UPSTREAM_ERROR",
                        status=502,
                    ) from exc
            except aiohttp.ClientError as exc:  # payload errors, connection reset mid-answer
                raise EngineError(
                    f"upstream model {self.model_id} broke off the answer: {exc}",
                    code="ENGINE_UPSTREAM_ERROR",
                    status=502,
                ) from exc
            except orjson.JSONDecodeError as exc:
                raise EngineError(f"upstream sent invalid JSON: {exc}", code="ENGINE_UPSTREAM_ERROR") from exc
            attempt += 1
            await asyncio.sleep(min(0.25 * 2**attempt, 2.0))


def _events(chunk: dict[str, Any]) -> list[LLMEvent]:
    if "error" in chunk:
        err = chunk["error"] or {}
        raise EngineError(f"upstream error: {err.get('message', err)}", code="ENGINE_UPSTREAM_ERROR")
    out: list[LLMEvent] = []
    for choice in chunk.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        text = delta.get("content")
        if text:
            out.append(LLMTextDelta(text))
        for tc in delta.get("tool_calls") or ():
            fn = tc.get("function") or {}
            out.append(LLMToolCallDelta(tc.get("index", 0), tc.get("id"), fn.get("name"), fn.get("arguments") or ""))
        if choice.get("finish_reason"):
            out.append(LLMFinish(choice["finish_reason"]))
    usage = chunk.get("usage")
    if usage:
        out.append(LLMUsage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0))
    return out


async def _status_error(model_id: str, resp: aiohttp.ClientResponse) -> EngineError:
    try:
        body = orjson.loads(await resp.read())
        err = body.get("error") if isinstance(body, dict) else None
        msg = err.get("message") if isinstance(err, dict) else (err or str(body)[:200])
    except (orjson.JSONDecodeError, aiohttp.ClientError):
        msg = resp.reason or "no details"
    if resp.status in (400, 422):
        # The upstream refused what the caller asked for (bad parameter): the caller's mistake.
        return EngineError(
            f"upstream model {model_id} rejected the request: {msg}", code="VALIDATION_UPSTREAM", status=400
        )
    return EngineError(
        f"upstream model {model_id} answered {resp.status}: {msg}", code="ENGINE_UPSTREAM_ERROR", status=502
    )

"""Mem0 as the chat-memory engine (`memory: {provider: mem0}`), over its REST API.

Two deployments speak different paths, chosen by `api`:
- `platform` (default, https://api.mem0.ai, `Authorization: Token <key>`): add with
  `POST /v1/memories/` (messages + user_id, `version: v2`, `output_format: v1.1`, as the official
  client sends), search with `POST /v2/memories/search/` (filters on user_id) or `/v1/memories/search/`.
- `oss` (the self-hosted `mem0/server`, e.g. http://localhost:8888): `POST /memories` and `POST /search`.
Mem0 extracts the facts itself (an LLM on its side), so update sends the turn's user/assistant text.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ..base import ContextItem, ContextQuery, MemoryEngine, TurnRecord
from .http import HttpAdapter, HttpOptions, chat_messages, ranked


class Mem0Options(HttpOptions):
    base_url: str = Field("https://api.mem0.ai", min_length=1, pattern=r"^https?://")
    api: Literal["platform", "oss"] = "platform"
    search_version: Literal["v1", "v2"] = "v2"  # platform only
    org_id: str | None = None  # platform: both or neither
    project_id: str | None = None
    threshold: float | None = Field(None, ge=0, le=1)  # platform: minimum similarity of a hit
    infer: bool = True  # false: store the messages as they are instead of extracting facts

    @model_validator(mode="after")
    def _org_and_project(self) -> Mem0Options:
        if bool(self.org_id) != bool(self.project_id):
            raise ValueError("org_id and project_id go together (set both or neither)")
        return self


class Mem0Memory(HttpAdapter, MemoryEngine):
    provider: ClassVar[str] = "mem0"
    Options = Mem0Options
    service = "mem0"

    def health_path(self) -> str:
        # The platform's key check (what the official client calls first); FastAPI's schema for oss.
        return "/v1/ping/" if self.options.api == "platform" else "/openapi.json"

    def auth_headers(self) -> dict[str, str]:
        key = self.options.api_key
        if key is None:
            return {}
        # The platform's scheme is "Token"; the stock oss server has no auth, a proxy in front takes Bearer.
        scheme = "Token" if self.options.api == "platform" else "Bearer"
        return {"authorization": f"{scheme} {key.get_secret_value()}"}

    def _scope(self) -> dict[str, str]:
        o = self.options
        return {"org_id": o.org_id, "project_id": o.project_id} if o.org_id and o.project_id else {}

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        if not query.user_id or not query.text.strip():
            return []
        o = self.options
        if o.api == "oss":
            body: dict[str, Any] = {"query": query.text, "user_id": query.user_id}
            got = await self.call("POST", "/search", json=body, op="search")
        else:
            body = {"query": query.text, "top_k": query.limit, **self._scope()}
            if o.search_version == "v2":
                body["filters"] = {"AND": [{"user_id": query.user_id}]}
            else:
                body["user_id"] = query.user_id
            if o.threshold is not None:
                body["threshold"] = o.threshold
            got = await self.call("POST", f"/{o.search_version}/memories/search/", json=body, op="search")
        return ranked("memory", _memories(got), query.limit)

    async def update(self, records: list[TurnRecord]) -> None:
        for record in records:
            messages = chat_messages(record.messages)
            if not record.user_id or not any(m["role"] == "user" for m in messages):
                continue
            body: dict[str, Any] = {"messages": messages, "user_id": record.user_id}
            if record.personality_id:
                body["metadata"] = {"personality_id": record.personality_id}
            if not self.options.infer:
                body["infer"] = False
            path = "/memories"
            if self.options.api == "platform":
                body.update(version="v2", output_format="v1.1", **self._scope())
                path = "/v1/memories/"
            await self.call("POST", path, json=body, op="add")


def _memories(payload: Any) -> list[str]:
    """The memories, best first, from any search answer: a bare list (v1), `{"results": [...]}` (v2 and oss)
    or `{"memories": [...]}` (older v2 docs)."""
    if isinstance(payload, dict):
        payload = payload.get("results", payload.get("memories", []))
    if not isinstance(payload, list):
        return []
    return [m["memory"] for m in payload if isinstance(m, dict) and isinstance(m.get("memory"), str)]

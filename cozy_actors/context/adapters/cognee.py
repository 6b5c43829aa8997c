"""Cognee as the knowledge engine (`knowledge: {provider: cognee}`), over its REST API (`/api/v1`).

Add uploads each document as a text file (`POST /api/v1/add`, multipart `data` + `datasetName`;
every Cognee version takes files), then asks Cognee to build its graph (`POST /api/v1/cognify`,
in the background by default: it runs LLM extraction and takes far longer than a request should).
Search is `POST /api/v1/search` with `search_type` CHUNKS by default: the stored passages, no LLM
call on Cognee's side, so it fits a turn's budget; GRAPH_COMPLETION etc. can be configured.

Auth: self-hosted servers with auth enabled take `Authorization: Bearer <token>` (`auth: bearer`);
Cognee Cloud takes `X-Api-Key` (`auth: api_key`, plus `tenant_id` as `X-Tenant-Id` when given).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import Field

from ..base import ContextItem, ContextQuery, KnowledgeEngine
from .http import HttpAdapter, HttpOptions, ranked

_TEXT_KEYS = ("text", "content", "summary", "description")


class CogneeOptions(HttpOptions):
    auth: Literal["bearer", "api_key"] = "bearer"
    tenant_id: str | None = None
    search_type: str = Field("CHUNKS", pattern=r"^[A-Z_]{2,40}$")
    cognify: bool = True  # build the graph after each add
    run_in_background: bool = True


class CogneeKnowledge(HttpAdapter, KnowledgeEngine):
    provider: ClassVar[str] = "cognee"
    Options = CogneeOptions
    service = "cognee"

    def health_path(self) -> str:
        return "/health"

    def auth_headers(self) -> dict[str, str]:
        o = self.options
        headers = {"x-tenant-id": o.tenant_id} if o.tenant_id else {}
        if o.api_key is not None:
            key = o.api_key.get_secret_value()
            headers.update({"x-api-key": key} if o.auth == "api_key" else {"authorization": f"Bearer {key}"})
        return headers

    async def add_documents(self, dataset: str, documents: list[dict[str, Any]]) -> int:
        """Upload and cognify; returns the number of documents (Cognee does its own chunking)."""
        form = aiohttp.FormData()
        count = 0
        for i, doc in enumerate(documents):
            text = str(doc.get("text") or "").strip()
            if text:
                title = str(doc.get("title") or "").strip()
                body = f"{title}\n\n{text}" if title else text
                form.add_field("data", body.encode(), filename=_filename(title, i), content_type="text/plain")
                count += 1
        if not count:
            return 0
        name = cognee_dataset(dataset)
        form.add_field("datasetName", name)
        await self.call("POST", "/api/v1/add", op="add", form=form)
        if self.options.cognify:
            job = {"datasets": [name], "run_in_background": self.options.run_in_background}
            await self.call("POST", "/api/v1/cognify", op="cognify", json=job)
        return count

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        if not query.text.strip():
            return []
        body = {
            "search_type": self.options.search_type,
            "query": query.text,
            "datasets": [cognee_dataset(d) for d in query.datasets],
            "top_k": query.limit,
        }
        # 404: none of the datasets exists in Cognee yet (nothing added): no knowledge, not an outage.
        got = await self.call("POST", "/api/v1/search", op="search", json=body, missing_ok=True)
        return ranked("knowledge", _texts(got), query.limit)


def cognee_dataset(dataset: str) -> str:
    """Cognee refuses dots and spaces in dataset names; ours may have dots."""
    return re.sub(r"[.\s]", "_", dataset)


def _filename(title: str, index: int) -> str:
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", title).strip("_")[:60] or "document"
    return f"{stem}-{index}.txt"


def _texts(payload: Any, depth: int = 0) -> list[str]:
    """Passages from a search answer: `[{"search_result": ..., "dataset_name": ...}]` (current API) or
    a bare list of results; a result is a string (completions) or a payload with `text` (chunks,
    summaries)."""
    if depth > 4 or payload is None:
        return []
    if isinstance(payload, str):
        return [payload]
    if isinstance(payload, list):
        return [t for item in payload for t in _texts(item, depth + 1)]
    if isinstance(payload, dict):
        if "search_result" in payload:
            return _texts(payload["search_result"], depth + 1)
        for key in _TEXT_KEYS:
            if isinstance(payload.get(key), str):
                return [payload[key]]
    return []

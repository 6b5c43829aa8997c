"""Admin operations on the knowledge engine: add documents to a dataset, search it.

Admin-only and audited, like the other admin APIs; the HTTP routes only parse and format.
"""

from __future__ import annotations

import re
from typing import Any

from cozy_core.errors import CozyError, Invalid

from .base import ContextQuery
from .service import ContextService

_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class KnowledgeAdmin:
    def __init__(self, context: ContextService, auth: Any, audit: Any) -> None:
        self.context = context
        self.auth = auth
        self.audit = audit

    def _engine(self, principal: Any, action: str, dataset: str, request_id: str | None) -> Any:
        self.auth.require_admin(principal, action, request_id=request_id)
        if not _DATASET.match(dataset):
            raise Invalid("dataset must be 1-64 letters, digits, '.', '_' or '-'", param="dataset")
        engine = self.context.engines.get("knowledge")
        if engine is None:
            raise CozyError(
                "the knowledge engine is disabled (context.yaml: knowledge.enabled)",
                code="RESOURCE_NOT_FOUND",
                status=404,
            )
        return engine

    async def add(
        self, principal: Any, dataset: str, documents: list[dict[str, Any]], *, request_id: str | None = None
    ) -> dict[str, Any]:
        engine = self._engine(principal, "knowledge.add", dataset, request_id)
        chunks = await engine.add_documents(dataset, documents)
        self.audit.record(
            "admin.knowledge.add",
            user_id=principal.user_id,
            user_name=principal.name,
            request_id=request_id,
            detail={"dataset": dataset, "documents": len(documents), "chunks": chunks},
        )
        return {"object": "knowledge.add", "dataset": dataset, "documents": len(documents), "chunks": chunks}

    async def search(
        self, principal: Any, dataset: str, q: str, *, limit: int = 5, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        engine = self._engine(principal, "knowledge.search", dataset, request_id)
        if not q.strip():
            raise Invalid("q must not be empty", param="q")
        items = await engine.search(ContextQuery(None, q, datasets=(dataset,), limit=max(1, min(limit, 50))))
        return [{"object": "knowledge.chunk", "text": i.text, "score": round(i.score, 6)} for i in items]

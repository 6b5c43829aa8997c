"""Knowledge admin routes: POST /v1/knowledge/{dataset}, GET /v1/knowledge/{dataset}/search?q=."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from ..api_schemas import json_response, parse_body, query_int
from ..auth import principal_of
from ..context import current_request_id


class KnowledgeDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=1_000_000)
    title: str | None = Field(None, max_length=500)
    metadata: dict[str, Any] = {}


class KnowledgeAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    documents: list[KnowledgeDocument] = Field(min_length=1, max_length=1000)


async def add_documents(request: Request) -> Response:
    body = await parse_body(request, KnowledgeAdd)
    result = await request.app.state.services.knowledge.add(
        principal_of(request),
        request.path_params["dataset"],
        [d.model_dump() for d in body.documents],
        request_id=current_request_id(),
    )
    return json_response(result)


async def search(request: Request) -> Response:
    items = await request.app.state.services.knowledge.search(
        principal_of(request),
        request.path_params["dataset"],
        request.query_params.get("q", ""),
        limit=query_int(request, "limit", 5),
        request_id=current_request_id(),
    )
    return json_response({"object": "list", "data": items})


def openapi_paths() -> dict[str, Any]:
    """OpenAPI entries for these routes (merged by cozy_http/openapi.py)."""
    err = {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    dataset = {
        "name": "dataset",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
    }
    return {
        "/v1/knowledge/{dataset}": {
            "post": {
                "summary": "Add documents to a knowledge dataset (admin); they are chunked and indexed",
                "tags": ["knowledge"],
                "parameters": [dataset],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/KnowledgeAdd"}}},
                },
                "responses": {"200": {"description": "documents and chunks written"}, "default": err},
            }
        },
        "/v1/knowledge/{dataset}/search": {
            "get": {
                "summary": "Full-text search of a knowledge dataset (admin)",
                "tags": ["knowledge"],
                "parameters": [
                    dataset,
                    {"name": "q", "in": "query", "required": True, "schema": {"type": "string", "minLength": 1}},
                    {
                        "name": "limit",
                        "in": "query",
                        "description": "clamped to 1-50",
                        "schema": {"type": "integer", "default": 5},
                    },
                ],
                "responses": {"200": {"description": "list of knowledge.chunk"}, "default": err},
            }
        },
    }


def openapi_schemas() -> dict[str, Any]:
    schema = KnowledgeAdd.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"KnowledgeAdd": schema, **schema.pop("$defs", {})}

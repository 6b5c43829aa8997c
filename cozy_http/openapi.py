"""OpenAPI document and an offline Swagger UI (assets from the swagger-ui-bundle wheel, no CDN)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .openapi_speech import paths as speech_paths
from .openapi_storage import PUBLIC
from .openapi_storage import paths as storage_paths
from .openapi_storage import schemas as storage_schemas
from .routes import knowledge
from .schemas import ChatCompletionRequest

_ERROR = {"$ref": "#/components/schemas/Error"}


def _op(summary: str, *, body: str | None = None, ok: str = "OK", tags: tuple[str, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": list(tags),
        "responses": {
            "200": {"description": ok},
            "default": {"description": "Error", "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    return op


def build_openapi(version: str) -> dict[str, Any]:
    """The document; every operation needs the bearer token except the public ones."""
    doc = _document(version)
    doc["components"]["schemas"].update(storage_schemas())
    doc["paths"].update(storage_paths())
    doc["paths"].update(speech_paths())
    doc["components"]["schemas"].update(knowledge.openapi_schemas())
    doc["paths"].update(knowledge.openapi_paths())
    doc["security"] = [{"bearer": []}]
    for path in PUBLIC:
        for op in doc["paths"].get(path, {}).values():
            op["security"] = []
    return doc


def _document(version: str) -> dict[str, Any]:
    chat_schema = ChatCompletionRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = chat_schema.pop("$defs", {})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "CozyEngine",
            "version": version,
            "description": "Realtime, voice-first conversation server with OpenAI-compatible APIs.",
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`cozy-...`) or a JWT from POST /v1/auth/token",
                }
            },
            "schemas": {
                "ChatCompletionRequest": chat_schema,
                **defs,
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "type", "code", "param"],
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "code": {"type": "string"},
                                "param": {"type": ["string", "null"]},
                                "request_id": {"type": ["string", "null"]},
                            },
                        }
                    },
                },
            },
        },
        "paths": {
            "/v1/chat/completions": {
                "post": _op(
                    "Chat completion (JSON or SSE with stream=true); `cozy` extension object selects "
                    "personality, session and tools",
                    body="ChatCompletionRequest",
                    ok="chat.completion, or text/event-stream of chat.completion.chunk",
                    tags=("chat",),
                )
            },
            "/v1/models": {"get": _op("List the configured LLM models", tags=("models",))},
            "/v1/models/{model}": {
                "get": {
                    **_op("One model", tags=("models",)),
                    "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                }
            },
            "/v1/personalities": {"get": _op("List personalities", tags=("personalities",))},
            "/v1/personalities/{personality_id}": {
                "get": {
                    **_op("One personality", tags=("personalities",)),
                    "parameters": [
                        {"name": "personality_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                }
            },
            "/health": {"get": _op("Liveness", tags=("ops",))},
            "/ready": {
                "get": _op("Readiness: status and per-check ok (503 when not); details for admins", tags=("ops",))
            },
            "/metrics": {"get": _op("Prometheus metrics", tags=("ops",))},
        },
    }


async def openapi_json(request: Request) -> Response:
    return Response(orjson.dumps(request.app.state.openapi), media_type="application/json")


_DOCS = """<!doctype html><html><head><meta charset="utf-8"><title>CozyEngine API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head><body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script></body></html>"""


async def docs(request: Request) -> Response:
    return HTMLResponse(_DOCS)

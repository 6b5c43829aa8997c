"""OpenAPI paths of the auth, sessions and admin routes (merged into the document by openapi.py)."""

from __future__ import annotations

from typing import Any

from .api_schemas import KeyCreate, SessionCreate, TokenRequest, UserCreate, UserUpdate

_ERROR = {"$ref": "#/components/schemas/Error"}
_OPTIONAL_BODIES = ("SessionCreate", "KeyCreate")  # every field optional: no body is fine
PUBLIC = ("/health", "/ready", "/metrics", "/v1/auth/token")


def _op(
    summary: str,
    *,
    tags: tuple[str, ...],
    body: str | None = None,
    ok: str = "200",
    params: list[dict[str, Any]] | None = None,
    admin: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary + (" (admin only)" if admin else ""),
        "tags": list(tags),
        "responses": {
            ok: {"description": "OK"},
            "default": {"description": "Error", "content": {"application/json": {"schema": _ERROR}}},
        },
    }
    if body:
        op["requestBody"] = {
            "required": body not in _OPTIONAL_BODIES,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}},
        }
    if params:
        op["parameters"] = params
    return op


def _q(name: str, kind: str = "string", doc: str = "", **schema: Any) -> dict[str, Any]:
    """An optional query parameter; `schema` adds constraints the route enforces (bounds, enums, formats)."""
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind, **schema}, "description": doc}


_SID = {"name": "session_id", "in": "path", "required": True, "schema": {"type": "string"}}
_UID = {"name": "user_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_KID = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
_PAGE = [_q("limit", "integer", "1-200", minimum=1, maximum=200), _q("cursor", doc="next_cursor of the previous page")]


def schemas() -> dict[str, Any]:
    ref = "#/components/schemas/{model}"
    models = (SessionCreate, TokenRequest, UserCreate, UserUpdate, KeyCreate)
    return {m.__name__: m.model_json_schema(ref_template=ref) for m in models}


def paths() -> dict[str, Any]:
    s, a = ("sessions",), ("admin",)
    return {
        "/v1/auth/token": {
            "post": {
                **_op("Username + password (JSON or OAuth2 form) -> bearer JWT", tags=("auth",), body="TokenRequest"),
                "security": [],
            }
        },
        "/v1/chat/sessions": {
            "post": _op("Create a session (id optional)", tags=s, body="SessionCreate", ok="201"),
            "get": _op("List your sessions, newest first", tags=s, params=_PAGE),
        },
        "/v1/chat/sessions/{session_id}": {
            "get": _op("One of your sessions (404 for anyone else's)", tags=s, params=[_SID]),
            "delete": _op("Soft-delete one of your sessions", tags=s, params=[_SID]),
        },
        "/v1/chat/sessions/{session_id}/messages": {
            "get": _op(
                "Stored messages with model, usage, latency and `incomplete`",
                tags=s,
                params=[_SID, *_PAGE, _q("order", doc="asc (default) or desc", enum=["asc", "desc"])],
            ),
        },
        "/v1/personalities/reload": {"post": _op("Reload personality files (all or nothing)", tags=a, admin=True)},
        "/v1/tools": {"get": _op("Server tools and whether they are offered", tags=a, admin=True)},
        "/v1/tools/refresh": {"post": _op("Re-read the tools configuration", tags=a, admin=True)},
        "/v1/admin/config": {"get": _op("Effective configuration, secrets redacted", tags=a, admin=True)},
        "/v1/admin/audit": {
            "get": _op(
                "Audit events, newest first",
                tags=a,
                admin=True,
                params=[
                    _q("type", doc="exact, or a family ending in '.' (e.g. auth.)"),
                    _q("user_id", format="uuid"),
                    _q("since", doc="ISO 8601 or Unix time"),
                    _q("until"),
                    *_PAGE,
                ],
            )
        },
        "/v1/admin/users": {
            "post": _op(
                "Create a user; the response holds its API key, once", tags=a, body="UserCreate", ok="201", admin=True
            ),
            "get": _op("List users in creation order (no password hashes)", tags=a, params=_PAGE, admin=True),
        },
        "/v1/admin/users/{user_id}": {
            "get": _op("One user and the first page of their API keys (`keys`)", tags=a, params=[_UID], admin=True),
            "patch": _op(
                "Disable, enable or re-role a user (not yourself; never the last enabled admin)",
                tags=a,
                body="UserUpdate",
                params=[_UID],
                admin=True,
            ),
        },
        "/v1/admin/users/{user_id}/keys": {
            "get": _op(
                "A user's API keys, revoked ones included (never a key or its hash)",
                tags=a,
                params=[_UID, *_PAGE],
                admin=True,
            ),
            "post": _op(
                "A new API key for the user; the response holds it, once",
                tags=a,
                body="KeyCreate",
                ok="201",
                params=[_UID],
                admin=True,
            ),
        },
        "/v1/admin/users/{user_id}/keys/{key_id}": {
            "delete": _op(
                "Revoke one of the user's active keys (refused at once on this node)",
                tags=a,
                ok="204",
                params=[_UID, _KID],
                admin=True,
            ),
        },
    }

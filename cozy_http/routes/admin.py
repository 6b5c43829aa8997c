"""Auth token, admin and tool routes. Role checks and audit live in the services; this only parses."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..api_schemas import (
    KeyCreate,
    TokenRequest,
    UserCreate,
    UserUpdate,
    json_response,
    page_body,
    parse_body,
    query_int,
    query_time,
)
from ..auth import principal_of
from ..context import current_request_id


async def issue_token(request: Request) -> Response:
    """POST /v1/auth/token: username + password (JSON or OAuth2 form) -> a bearer JWT."""
    body = await parse_body(request, TokenRequest, form_ok=True)
    client = request.app.state.client_address(request.scope)  # security.trusted_proxies decides
    issued = await request.app.state.services.auth.passwords.login(
        body.username, body.password, request_id=current_request_id(), client=client
    )
    return json_response(
        {
            "access_token": issued.access_token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
            "expires_at": issued.expires_at,
        }
    )


async def reload_personalities(request: Request) -> Response:
    items = await request.app.state.services.admin.reload_personalities(
        principal_of(request), request_id=current_request_id()
    )
    return json_response({"object": "list", "data": [p.public() for p in items]})


async def list_tools(request: Request) -> Response:
    admin, rid = request.app.state.services.admin, current_request_id()
    tools = admin.tools(principal_of(request), request_id=rid)
    servers = admin.tool_servers(principal_of(request), request_id=rid)  # MCP servers: up or not, and why
    return json_response({"object": "list", "data": tools, "servers": servers})


async def refresh_tools(request: Request) -> Response:
    tools = await request.app.state.services.admin.refresh_tools(principal_of(request), request_id=current_request_id())
    return json_response({"object": "list", "data": tools})


async def get_config(request: Request) -> Response:
    config = request.app.state.services.admin.config(principal_of(request), request_id=current_request_id())
    return json_response(config)


async def list_audit(request: Request) -> Response:
    q = request.query_params
    page = await request.app.state.services.admin.audit_events(
        principal_of(request),
        type=q.get("type") or None,
        user_id=q.get("user_id") or None,
        since=query_time(request, "since"),
        until=query_time(request, "until"),
        limit=query_int(request, "limit", 100),
        cursor=q.get("cursor"),
        request_id=current_request_id(),
    )
    return json_response(page_body([e.public() for e in page.items], page.next_cursor))


async def create_user(request: Request) -> Response:
    """POST /v1/admin/users: the new user's API key is in the response, and nowhere else, ever."""
    body = await parse_body(request, UserCreate)
    user, key = await request.app.state.services.admin.create_user(
        principal_of(request),
        body.name,
        role=body.role,
        password=body.password,
        rate_limit_rpm=body.rate_limit_rpm,
        rate_limit_burst=body.rate_limit_burst,
        request_id=current_request_id(),
    )
    return json_response({**user.public(), "api_key": key}, 201)


async def list_users(request: Request) -> Response:
    """GET /v1/admin/users: every user in creation order, paged (never a password hash)."""
    page = await request.app.state.services.admin.users(
        principal_of(request),
        limit=query_int(request, "limit", 100),
        cursor=request.query_params.get("cursor"),
        request_id=current_request_id(),
    )
    return json_response(page_body([u.public() for u in page.items], page.next_cursor))


async def get_user(request: Request) -> Response:
    """GET /v1/admin/users/{user_id}: the user and the first page of their keys (`keys`)."""
    user, keys = await request.app.state.services.admin.user_keys(
        principal_of(request), request.path_params["user_id"], request_id=current_request_id()
    )
    return json_response({**user.public(), "keys": page_body([k.public() for k in keys.items], keys.next_cursor)})


async def update_user(request: Request) -> Response:
    """PATCH /v1/admin/users/{user_id}: `disabled` and/or `role`."""
    body = await parse_body(request, UserUpdate)
    user = await request.app.state.services.admin.update_user(
        principal_of(request),
        request.path_params["user_id"],
        disabled=body.disabled,
        role=body.role,
        request_id=current_request_id(),
    )
    return json_response(user.public())


async def list_keys(request: Request) -> Response:
    """GET /v1/admin/users/{user_id}/keys: revoked keys too (never a key or its hash)."""
    _, page = await request.app.state.services.admin.user_keys(
        principal_of(request),
        request.path_params["user_id"],
        limit=query_int(request, "limit", 100),
        cursor=request.query_params.get("cursor"),
        request_id=current_request_id(),
    )
    return json_response(page_body([k.public() for k in page.items], page.next_cursor))


async def create_key(request: Request) -> Response:
    """POST /v1/admin/users/{user_id}/keys: like create_user, the key is in this response only."""
    body = await parse_body(request, KeyCreate, empty_ok=True)
    record, key = await request.app.state.services.admin.add_key(
        principal_of(request),
        request.path_params["user_id"],
        name=body.name,
        rate_limit_rpm=body.rate_limit_rpm,
        rate_limit_burst=body.rate_limit_burst,
        request_id=current_request_id(),
    )
    return json_response({**record.public(), "api_key": key}, 201)


async def revoke_key(request: Request) -> Response:
    """DELETE /v1/admin/users/{user_id}/keys/{key_id}: 204; refused at once on this node."""
    await request.app.state.services.admin.revoke_key(
        principal_of(request),
        request.path_params["user_id"],
        request.path_params["key_id"],
        request_id=current_request_id(),
    )
    return Response(status_code=204)

"""Auth token, admin and tool routes. Role checks and audit live in the services; this only parses."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..api_schemas import TokenRequest, UserCreate, json_response, page_body, parse_body, query_int, query_time
from ..auth import principal_of
from ..context import current_request_id


async def issue_token(request: Request) -> Response:
    """POST /v1/auth/token: username + password (JSON or OAuth2 form) -> a bearer JWT."""
    body = await parse_body(request, TokenRequest, form_ok=True)
    issued = await request.app.state.services.auth.login(body.username, body.password, request_id=current_request_id())
    return json_response(
        {"access_token": issued.access_token, "token_type": "bearer", "expires_in": issued.expires_in,
         "expires_at": issued.expires_at}
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

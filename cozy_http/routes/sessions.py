"""CozyChat sessions API: create, list, read, page through messages, soft delete (owner only)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..api_schemas import SessionCreate, json_response, page_body, parse_body, query_int
from ..auth import principal_of
from ..context import current_request_id


async def create_session(request: Request) -> Response:
    body = await parse_body(request, SessionCreate, empty_ok=True)
    record = await request.app.state.services.sessions.create(
        principal_of(request),
        session_id=body.id,
        personality_id=body.personality_id,
        title=body.title,
        metadata=body.metadata,
    )
    return json_response(record.public(), 201)


async def list_sessions(request: Request) -> Response:
    page = await request.app.state.services.sessions.list(
        principal_of(request), limit=query_int(request, "limit", 20), cursor=request.query_params.get("cursor")
    )
    return json_response(page_body([s.public() for s in page.items], page.next_cursor))


async def get_session(request: Request) -> Response:
    record = await request.app.state.services.sessions.get(principal_of(request), request.path_params["session_id"])
    return json_response(record.public())


async def list_messages(request: Request) -> Response:
    page = await request.app.state.services.sessions.messages(
        principal_of(request),
        request.path_params["session_id"],
        limit=query_int(request, "limit", 50),
        cursor=request.query_params.get("cursor"),
        order=request.query_params.get("order", "asc"),
    )
    return json_response(page_body([m.public() for m in page.items], page.next_cursor))


async def delete_session(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    await request.app.state.services.sessions.delete(principal_of(request), session_id, request_id=current_request_id())
    return json_response({"id": session_id, "object": "chat.session.deleted", "deleted": True})

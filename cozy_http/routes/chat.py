"""POST /v1/chat/completions: parse, start a turn, format events as OpenAI JSON or SSE."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from cozy_actors.conversation.chat import ChatRequest
from cozy_actors.conversation.events import ServerToolCall, TextDelta, ToolCallDelta, TurnDone, TurnFailed
from cozy_actors.conversation.handle import TurnHandle
from cozy_actors.placement import OwnedElsewhere
from cozy_core.errors import CozyError

from ..context import current_request_id
from ..errors import error_body, error_response, from_validation
from ..forward import was_forwarded
from ..schemas import ChatCompletionRequest
from ..sse import EventStreamResponse

MAX_ITERATIONS_MARKER = "max_tool_iterations"


async def read_json(request: Request) -> Any:
    body = await request.body()
    if not body:
        raise CozyError("request body is empty; send a JSON object", code="VALIDATION_INVALID_JSON", status=400)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise CozyError(f"request body is not valid JSON: {exc}", code="VALIDATION_INVALID_JSON", status=400) from exc


async def chat_completions(request: Request) -> Response:
    raw = await read_json(request)
    if not isinstance(raw, dict):
        raise CozyError("request body must be a JSON object", code="VALIDATION_ERROR", status=400)
    try:
        req = ChatCompletionRequest.model_validate(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None
    cozy = req.cozy
    chat = ChatRequest(
        messages=raw["messages"],
        model=req.model,
        tools=raw.get("tools") or [],
        tool_choice=req.tool_choice,
        temperature=req.temperature,
        max_tokens=req.max_completion_tokens or req.max_tokens,
        extra=req.passthrough(),
        personality_id=cozy.personality_id if cozy else None,
        session_id=cozy.session_id if cozy else None,
        allowed_tools=cozy.allowed_tools if cozy else None,
        use_personalization=cozy.use_personalization if cozy else True,
        principal=getattr(request.state, "principal", None),
        request_id=current_request_id(),
        forwarded=was_forwarded(request),
    )
    services = request.app.state.services
    try:
        handle = await services.chat.start_turn(chat)
    except OwnedElsewhere as exc:
        if chat.forwarded:
            raise  # 409: the worker that sent it here thought this one was the owner
        return await request.app.state.forwarder.forward(request, exc.owner.address, owner=exc.owner.worker_id)
    events = aiter(handle)
    try:
        first = await anext(events)
    except BaseException:
        handle.cancel()
        raise
    if isinstance(first, TurnFailed):
        return error_response(CozyError(first.message, code=first.code, status=first.status), first.headers)
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return EventStreamResponse(_sse(handle, first, events, include_usage))
    return await _complete(handle, first, events)


def _cozy_meta(handle: TurnHandle, done: TurnDone | None) -> dict[str, Any]:
    return {
        "personality_id": handle.personality_id,
        "session_id": handle.session_id,
        "degraded": bool(done and done.degraded),
        "degrade_reasons": list(done.degrade_reasons) if done else [],
        "tool_iterations": done.tool_iterations if done else 0,
        "stop_reason": done.stop_reason if done else None,
        "max_tool_iterations_reached": bool(done and done.stop_reason == MAX_ITERATIONS_MARKER),
    }


def _usage(done: TurnDone) -> dict[str, int]:
    u = done.usage
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


async def _complete(handle: TurnHandle, first: Any, events: AsyncIterator[Any]) -> Response:
    text: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    done: TurnDone | None = None

    async def consume(event: Any) -> Response | None:
        nonlocal done
        if isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            call = calls.setdefault(
                event.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] += event.id or ""
            call["function"]["name"] += event.name or ""
            call["function"]["arguments"] += event.arguments
        elif isinstance(event, TurnDone):
            done = event
        elif isinstance(event, TurnFailed):
            return error_response(CozyError(event.message, code=event.code, status=event.status), event.headers)
        return None

    if (resp := await consume(first)) is not None:
        return resp
    async for event in events:
        if (resp := await consume(event)) is not None:
            return resp
    assert done is not None
    tool_calls = [calls[i] for i in sorted(calls)] or None
    body = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": done.model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None if tool_calls and not text else "".join(text),
                    "tool_calls": tool_calls,
                    "refusal": None,
                },
                "finish_reason": done.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(done),
        "cozy": _cozy_meta(handle, done),
    }
    return Response(orjson.dumps(body), media_type="application/json")


async def _sse(
    handle: TurnHandle, first: Any, events: AsyncGenerator[Any, None], include_usage: bool
) -> AsyncGenerator[bytes, None]:
    """Chunks share one prefix (id, created, model), so each delta costs one small orjson call."""
    created = int(time.time())
    head = orjson.dumps(
        {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": created,
            "model": handle.model,
        }
    )[:-1]
    prefix = b"data: " + head + b',"choices":[{"index":0,"delta":'
    tail = b',"logprobs":null,"finish_reason":null}]' + (b',"usage":null' if include_usage else b"") + b"}\n\n"
    role_sent = False
    finished = False
    try:
        pending: Any = first
        while True:
            event = pending if pending is not None else await anext(events, None)
            pending = None
            if event is None:
                break
            if isinstance(event, TextDelta):
                delta: dict[str, Any] = {"content": event.text}
                if not role_sent:
                    yield prefix + b'{"role":"assistant","content":""}' + tail
                    role_sent = True
                yield prefix + orjson.dumps(delta) + tail
            elif isinstance(event, ToolCallDelta):
                frag: dict[str, Any] = {"index": event.index, "function": {"arguments": event.arguments}}
                if event.id is not None or event.name is not None:
                    frag = {
                        "index": event.index,
                        "id": event.id,
                        "type": "function",
                        "function": {"name": event.name, "arguments": event.arguments},
                    }
                delta = {"tool_calls": [frag]}
                if not role_sent:
                    delta = {"role": "assistant", "content": None, **delta}
                    role_sent = True
                yield prefix + orjson.dumps(delta) + tail
            elif isinstance(event, ServerToolCall):
                continue
            elif isinstance(event, TurnDone):
                if not role_sent:
                    yield prefix + b'{"role":"assistant","content":""}' + tail
                final = {
                    "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": event.finish_reason}],
                    "cozy": _cozy_meta(handle, event),
                }
                if include_usage:
                    final["usage"] = None
                yield b"data: " + head + b"," + orjson.dumps(final)[1:] + b"\n\n"
                if include_usage:
                    usage = {"choices": [], "usage": _usage(event)}
                    yield b"data: " + head + b"," + orjson.dumps(usage)[1:] + b"\n\n"
                yield b"data: [DONE]\n\n"
                finished = True
                break
            elif isinstance(event, TurnFailed):
                # Mid-stream failure: an error object, no [DONE]; the openai SDK raises APIError.
                err = CozyError(event.message, code=event.code, status=event.status)
                yield b"data: " + orjson.dumps(error_body(err)) + b"\n\n"
                finished = True
                break
    finally:
        if not finished:
            handle.cancel("client disconnected")
        await events.aclose()

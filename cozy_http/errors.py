"""Every error leaves as the OpenAI error body plus CozyEngine's code and the request id:
`{"error": {"message", "type", "code", "param", "request_id"}}`, with the right HTTP status, so
the openai SDK raises the matching exception class."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from cozy_core.errors import CozyError

from .context import current_request_id

log = logging.getLogger("cozy.http")

_HTTP_CODES = {404: "RESOURCE_NOT_FOUND", 405: "VALIDATION_METHOD_NOT_ALLOWED", 413: "VALIDATION_BODY_TOO_LARGE"}


def error_body(err: CozyError) -> dict[str, Any]:
    return {
        "error": {
            "message": err.message,
            "type": err.type,
            "code": err.code,
            "param": err.param,
            "request_id": current_request_id(),
        }
    }


def error_response(err: CozyError, headers: dict[str, str] | None = None) -> Response:
    hdrs = {"x-request-id": current_request_id() or ""}
    if err.status == 401:
        hdrs["www-authenticate"] = 'Bearer realm="cozyengine"'
    extra = getattr(err, "headers", None)  # e.g. Retry-After on 429 (openai SDKs wait that long, then retry)
    if extra:
        hdrs.update(extra)
    if headers:
        hdrs.update(headers)
    if err.status in (400, 404, 413, 415, 422):
        hdrs["x-should-retry"] = "false"
    return Response(orjson.dumps(error_body(err)), status_code=err.status, media_type="application/json", headers=hdrs)


def from_validation(exc: ValidationError, prefix: str = "") -> CozyError:
    """The first pydantic error as a VALIDATION_ERROR naming the offending parameter."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if p != "__root__")
    param = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or None)
    return CozyError(f"{param or 'body'}: {first['msg']}", code="VALIDATION_ERROR", status=400, param=param)


async def handle_cozy_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CozyError)
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if status == 404:
        message = f"no route for {request.method} {request.url.path}"
    code = _HTTP_CODES.get(status, "VALIDATION_ERROR" if status < 500 else "INTERNAL_ERROR")
    return error_response(CozyError(message, code=code, status=status), headers=exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error")
    return error_response(CozyError("internal server error", code="INTERNAL_ERROR", status=500))

"""Wire models and query parsing for the sessions, auth and admin routes (parsing only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from cozy_core.errors import CozyError, Invalid

from .errors import from_validation
from .routes.chat import read_json

M = TypeVar("M", bound=BaseModel)
SESSION_ID = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, pattern=SESSION_ID)
    personality_id: str | None = Field(None, max_length=64)
    title: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] | None = None


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OAuth2 password grant sends grant_type, scope, ...
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
    role: Literal["user", "admin"] = "user"
    password: str | None = Field(None, min_length=8, max_length=1024)
    rate_limit_rpm: float | None = Field(None, gt=0)
    rate_limit_burst: int | None = Field(None, ge=1)


class UserUpdate(BaseModel):
    """PATCH of a user: both optional; strict so `"disabled": "no"` is an error, not False."""

    model_config = ConfigDict(extra="forbid")
    disabled: bool | None = Field(None, strict=True)
    role: Literal["user", "admin"] | None = None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=64)
    rate_limit_rpm: float | None = Field(None, gt=0)
    rate_limit_burst: int | None = Field(None, ge=1)


async def parse_body(request: Request, model: type[M], *, empty_ok: bool = False, form_ok: bool = False) -> M:
    """JSON body validated into `model`; `form_ok` also takes a form (OAuth2 password grant)."""
    ctype = request.headers.get("content-type", "")
    body = await request.body()
    if form_ok and ctype.startswith("application/x-www-form-urlencoded") and not body.lstrip().startswith(b"{"):
        raw: Any = dict((await request.form()).items())
    elif empty_ok and not body.strip():
        raw = {}
    else:
        raw = await read_json(request)
    if not isinstance(raw, dict):
        raise CozyError("request body must be a JSON object", code="VALIDATION_ERROR", status=400)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise from_validation(exc) from None


def query_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise Invalid(f"{name} must be an integer", param=name) from None


def query_time(request: Request, name: str) -> datetime | None:
    """An ISO 8601 time or a Unix timestamp."""
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return datetime.fromtimestamp(float(value)).astimezone()
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{name} must be an ISO 8601 time or a Unix timestamp", param=name) from None
    return parsed if parsed.tzinfo else parsed.astimezone()


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def page_body(items: list[dict[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    """OpenAI-style list with keyset paging: pass `next_cursor` back as `cursor` for the next page."""
    return {"object": "list", "data": items, "has_more": next_cursor is not None, "next_cursor": next_cursor}

"""Rows as the rest of the server sees them, and opaque cursors for keyset pagination.

Keyset (not OFFSET) pagination: a page costs the same at message 10 and at message 10 000, and
rows inserted while a client pages never shift what it sees.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson

from cozy_core.errors import Invalid

T = TypeVar("T")


def _ts(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


@dataclass(frozen=True)
class UserRecord:
    id: str
    name: str
    role: str
    disabled: bool = False
    created_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "user",
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "created_at": _ts(self.created_at),
        }


def user_record(row: Any) -> UserRecord:
    """A UserRecord from a row holding id, name, role, disabled and created_at."""
    return UserRecord(str(row["id"]), row["name"], row["role"], row["disabled"], row["created_at"])


@dataclass(frozen=True)
class KeyRecord:
    """An API key as admins see it: never the key or its hash, only its first characters."""

    id: str
    user_id: str
    prefix: str
    name: str | None
    rate_limit_rpm: float | None
    rate_limit_burst: int | None
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "api_key",
            "user_id": self.user_id,
            "prefix": self.prefix,
            "name": self.name,
            "rate_limit_rpm": self.rate_limit_rpm,
            "rate_limit_burst": self.rate_limit_burst,
            "created_at": _ts(self.created_at),
            "last_used_at": _ts(self.last_used_at),
            "revoked_at": _ts(self.revoked_at),
        }


@dataclass(frozen=True)
class SessionRecord:
    id: str
    user_id: str
    personality_id: str
    title: str | None
    metadata: dict[str, Any]
    message_count: int
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.session",
            "personality_id": self.personality_id,
            "title": self.title,
            "metadata": self.metadata,
            "message_count": self.message_count,
            "created_at": _ts(self.created_at),
            "updated_at": _ts(self.updated_at),
        }


@dataclass(frozen=True)
class MessageRecord:
    id: int
    session_id: str
    role: str
    content: Any
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: int | None = None
    incomplete: bool = False
    created_at: datetime | None = None

    def as_chat_message(self) -> dict[str, Any]:
        """The OpenAI message this row stores (what a prompt is rebuilt from)."""
        msg: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            msg["name"] = self.name
        if self.tool_calls:
            msg["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            msg["tool_call_id"] = self.tool_call_id
        return msg

    def public(self) -> dict[str, Any]:
        usage = None
        if self.prompt_tokens is not None or self.completion_tokens is not None:
            usage = {"prompt_tokens": self.prompt_tokens or 0, "completion_tokens": self.completion_tokens or 0}
        return {
            "id": self.id,
            "object": "chat.message",
            "session_id": self.session_id,
            **self.as_chat_message(),
            "model": self.model,
            "usage": usage,
            "latency_ms": self.latency_ms,
            "incomplete": self.incomplete,
            "created_at": _ts(self.created_at),
        }


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    type: str
    user_id: str | None
    user_name: str | None
    outcome: str
    request_id: str | None
    resource: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "audit.event",
            "at": self.at.isoformat(),
            "type": self.type,
            "user_id": self.user_id,
            "user_name": self.user_name,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "resource": self.resource,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(parts))).decode().rstrip("=")


def decode_cursor(cursor: str | None, arity: int) -> list[Any] | None:
    """The cursor's parts, or None for the first page; a forged or stale cursor is a 400."""
    if not cursor:
        return None
    try:
        parts = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        parts = None
    if not isinstance(parts, list) or len(parts) != arity:
        raise Invalid("cursor is not valid; pass next_cursor from the previous page", param="cursor")
    return parts


def encode_created_cursor(created_at: datetime, row_id: str) -> str:
    return encode_cursor(created_at.isoformat(), row_id)


def decode_created_cursor(cursor: str | None) -> tuple[datetime | None, str | None]:
    """(created_at, uuid) of the last row of the previous page; checked here, so a forged cursor is
    a 400 rather than a database error."""
    after = decode_cursor(cursor, 2)
    if after is None:
        return None, None
    try:
        return datetime.fromisoformat(str(after[0])), str(uuid.UUID(str(after[1])))
    except ValueError:
        raise Invalid("cursor is not valid; pass next_cursor from the previous page", param="cursor") from None

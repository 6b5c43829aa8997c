"""Memobase as the user-profile engine (`profile: {provider: memobase}`), over its REST API
(`/api/v1`, `Authorization: Bearer <project token>`; https://api.memobase.dev or self-hosted).

Memobase keeps a structured profile (topic / sub_topic / content) that its server extracts from chat
"blobs". Update inserts each finished turn as a chat blob (`POST /blobs/insert/{uid}`), creating the
Memobase user on first sight, then flushes the user's buffer so the next turn sees the new profile
(Memobase otherwise waits until its buffer is full). Search reads `GET /users/profile/{uid}`.

Memobase answers HTTP 200 with `{"data", "errno", "errmsg"}`; errno != 0 is an error. Its user ids
must be UUIDs: ours are mapped with uuid5 (a UUID already is kept), so the mapping is stable.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from pydantic import Field

from cozy_core.engines import EngineError

from ..base import ContextItem, ContextQuery, ProfileEngine, TurnRecord
from .http import HttpAdapter, HttpOptions, chat_messages, ranked

_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "cozyengine:memobase-user")
_KNOWN_USERS_MAX = 10_000  # bounded cache of users known to exist upstream


def memobase_user_id(user_id: str) -> str:
    """The Memobase id (UUID) of one of our users: the id itself if it is a UUID, else uuid5 of it."""
    try:
        return str(uuid.UUID(user_id))
    except ValueError:
        return str(uuid.uuid5(_NAMESPACE, user_id))


class MemobaseOptions(HttpOptions):
    base_url: str = Field("https://api.memobase.dev", min_length=1, pattern=r"^https?://")
    max_token_size: int = Field(500, ge=50)  # the profile's size per turn, in Memobase's token count
    prefer_topics: list[str] = Field(default_factory=list)  # ranked first when the profile is cut to max_token_size
    flush: bool = True  # process the buffered turns right after each update batch


class MemobaseProfile(HttpAdapter, ProfileEngine):
    provider: ClassVar[str] = "memobase"
    Options = MemobaseOptions
    service = "memobase"

    def __init__(self, options: MemobaseOptions | None = None, *, db: Any = None) -> None:
        super().__init__(options, db=db)
        self._known: set[str] = set()

    def health_path(self) -> str:
        return "/api/v1/healthcheck"

    def auth_headers(self) -> dict[str, str]:
        key = self.options.api_key
        return {"authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    async def _api(self, method: str, path: str, *, op: str, **kwargs: Any) -> Any:
        """A call unwrapped from Memobase's envelope; None when the user or item does not exist."""
        body = await self.call(method, f"/api/v1{path}", op=op, missing_ok=True, **kwargs)
        if body is None:
            return None
        if not isinstance(body, dict):
            raise EngineError(f"memobase {op}: unexpected answer", code="ENGINE_UPSTREAM_ERROR")
        errno = body.get("errno", 0)
        if errno == 404:
            return None
        if errno:
            raise EngineError(
                f"memobase {op}: errno {errno} {body.get('errmsg', '')}".strip(), code="ENGINE_UPSTREAM_ERROR"
            )
        return body.get("data")

    async def search(self, query: ContextQuery) -> list[ContextItem]:
        if not query.user_id:
            return []
        params: list[tuple[str, Any]] = [("max_token_size", self.options.max_token_size)]
        params += [("prefer_topics", t) for t in self.options.prefer_topics]
        data = await self._api("GET", f"/users/profile/{memobase_user_id(query.user_id)}", op="profile", params=params)
        profiles = (data or {}).get("profiles") or []
        return ranked("profile", [_line(p) for p in profiles if isinstance(p, dict)], query.limit)

    async def _ensure_user(self, user_id: str, uid: str) -> None:
        if uid in self._known:
            return
        if await self._api("GET", f"/users/{uid}", op="get user") is None:
            await self._api("POST", "/users", op="add user", json={"id": uid, "data": {"cozy_user_id": user_id}})
        if len(self._known) >= _KNOWN_USERS_MAX:
            self._known.clear()
        self._known.add(uid)

    async def update(self, records: list[TurnRecord]) -> None:
        touched: list[str] = []
        for record in records:
            messages = chat_messages(record.messages)
            if not record.user_id or not any(m["role"] == "user" for m in messages):
                continue
            uid = memobase_user_id(record.user_id)
            await self._ensure_user(record.user_id, uid)
            blob = {"blob_type": "chat", "blob_data": {"messages": messages}}
            if await self._api("POST", f"/blobs/insert/{uid}", op="insert", json=blob) is None:
                self._known.discard(uid)  # deleted upstream meanwhile: the queue's retry recreates it
                raise EngineError("memobase insert: user not found", code="ENGINE_UPSTREAM_ERROR")
            if uid not in touched:
                touched.append(uid)
        if self.options.flush:
            for uid in touched:
                await self._api("POST", f"/users/buffer/{uid}/chat", op="flush")


def _line(profile: dict[str, Any]) -> str:
    """`topic::sub_topic: content`, the notation of Memobase's own context prompt."""
    attrs = profile.get("attributes") or {}
    content = str(profile.get("content") or "").strip()
    topic, sub = attrs.get("topic"), attrs.get("sub_topic")
    if not content:
        return ""
    return f"{topic}::{sub}: {content}" if topic and sub else content

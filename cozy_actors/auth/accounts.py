"""Account management shared by the admin API and the `cozy users` CLI: list and inspect users,
disable, enable or re-role them, add and revoke their API keys.

The rules live here so both doors enforce them: nobody locks themselves out (disabling or
re-roling oneself is refused; the store refuses to lose the last enabled admin), every change is
an audit event, and every change is felt at once on this node (`AuthService.forget`).
"""

from __future__ import annotations

import uuid
from typing import Any

from cozy_actors.storage.records import KeyRecord, Page, UserRecord
from cozy_core.errors import Invalid, NotFound

from .principal import ROLES, Principal
from .service import AuthService


def check_uuid(value: str, param: str) -> str:
    """The canonical form of a UUID; anything else is a 400 (not a database error)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        raise Invalid(f"{param} must be a UUID", param=param) from None


class Accounts:
    def __init__(self, auth: AuthService) -> None:
        self.auth = auth
        self.users = auth.users
        self.audit = auth.audit

    def _record(self, type: str, user: UserRecord, by: Principal | None, request_id: str | None, **detail: Any) -> None:
        """An audit event by `by` (None: the CLI) about `user`."""
        self.audit.record(
            type,
            user_id=by.user_id if by else None,
            user_name=by.name if by else None,
            request_id=request_id,
            resource=f"user:{user.name}",
            detail={"user_id": user.id, **detail},
        )

    async def list_users(self, *, limit: int, cursor: str | None = None) -> Page[UserRecord]:
        return await self.users.list(limit=limit, cursor=cursor)

    async def get_user(self, user_id: str) -> UserRecord:
        user = await self.users.get(check_uuid(user_id, "user_id"))
        if user is None:
            raise NotFound(f"user {user_id!r} not found", param="user_id")
        return user

    async def by_name(self, name: str) -> UserRecord:
        found = await self.users.by_name(name)
        if found is None:
            raise NotFound(f"user {name!r} not found", param="name")
        return found[0]

    async def update_user(
        self,
        user_id: str,
        *,
        disabled: bool | None = None,
        role: str | None = None,
        by: Principal | None = None,
        request_id: str | None = None,
    ) -> UserRecord:
        """Disable, enable or re-role a user; their cached tokens stop counting at once here."""
        user_id = check_uuid(user_id, "user_id")
        if role is not None and role not in ROLES:
            raise Invalid(f"role must be one of {list(ROLES)}", param="role")
        if by is not None and by.user_id == user_id:
            if disabled:
                raise Invalid("you cannot disable yourself; another admin can", param="disabled")
            if role is not None and role != by.role:
                raise Invalid("you cannot change your own role; another admin can", param="role")
        if disabled is None and role is None:
            return await self.get_user(user_id)
        changed = await self.users.update(user_id, disabled=disabled, role=role)
        if changed is None:
            raise NotFound(f"user {user_id!r} not found", param="user_id")
        before, after = changed
        await self.auth.forget_everywhere(user_id=user_id, end_sessions=after.disabled)
        self._record(
            "user.update",
            after,
            by,
            request_id,
            disabled=after.disabled,
            role=after.role,
            changed=[f for f in ("disabled", "role") if getattr(before, f) != getattr(after, f)],
        )
        return after

    async def keys(self, user_id: str, *, limit: int, cursor: str | None = None) -> tuple[UserRecord, Page[KeyRecord]]:
        """The user (404 when unknown) and a page of their keys, revoked ones included."""
        user = await self.get_user(user_id)
        return user, await self.users.list_keys(user.id, limit=limit, cursor=cursor)

    async def add_key(
        self,
        user_id: str,
        *,
        name: str | None = None,
        rate_limit_rpm: float | None = None,
        rate_limit_burst: int | None = None,
        by: Principal | None = None,
        request_id: str | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key for the user: (its record, the key itself, to be shown once and never again)."""
        user = await self.get_user(user_id)
        key_id, key = await self.auth.issue_key(
            user.id, name=name, rate_limit_rpm=rate_limit_rpm, rate_limit_burst=rate_limit_burst
        )
        record = await self.users.get_key(key_id)
        assert record is not None
        self._record("user.key.create", user, by, request_id, key_id=key_id, key_prefix=record.prefix)
        return record, key

    async def revoke_key(
        self, key_id: str, *, user_id: str | None = None, by: Principal | None = None, request_id: str | None = None
    ) -> KeyRecord:
        """Revoke an active key (which must be `user_id`'s, when given); 404 otherwise."""
        key_id = check_uuid(key_id, "key_id")
        owner = await self.get_user(user_id) if user_id is not None else None
        revoked = await self.users.revoke_key(key_id, user_id=owner.id if owner else None)
        if revoked is None:
            whose = f" of user {owner.name!r}" if owner else ""
            raise NotFound(f"no active API key {key_id!r}{whose}", param="key_id")
        await self.auth.forget_everywhere(key_id=key_id, end_sessions=True)
        owner = owner or await self.users.get(revoked.user_id)
        assert owner is not None  # keys go with their user (ON DELETE CASCADE)
        self._record("user.key.revoke", owner, by, request_id, key_id=key_id, key_prefix=revoked.prefix)
        return revoked

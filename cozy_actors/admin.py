"""Admin actions: reload personalities, list/refresh tools, read the config and the audit trail,
manage users and their API keys. Each one checks the admin role first and leaves an audit event,
refused or not (account rules themselves live in cozy_actors.auth.accounts, shared with the CLI).

Reloads validate everything before they swap anything: a bad file answers 400 with every problem
and the running server keeps what it had.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cozy_actors.audit import AuditLog
from cozy_actors.auth.accounts import Accounts, check_uuid
from cozy_actors.auth.principal import Principal
from cozy_actors.auth.service import AuthService
from cozy_actors.cache.broadcast import Broadcaster, Notices
from cozy_actors.config import ConfigError, Settings, load_settings, redacted
from cozy_actors.engines.tools.engine import ToolsConfigError, ToolsEngine
from cozy_actors.personalities import Personality, PersonalityError, PersonalityStore
from cozy_actors.storage.audit import PgAuditStore
from cozy_actors.storage.records import AuditRecord, KeyRecord, Page, UserRecord
from cozy_core.errors import CozyError

from .conversation.sessions import check_limit


def _invalid(what: str, problems: list[str]) -> CozyError:
    return CozyError(f"{what}: nothing changed; " + "; ".join(problems), code="VALIDATION_CONFIG_INVALID", status=400)


class AdminService:
    def __init__(
        self,
        settings: Settings,
        *,
        auth: AuthService,
        audit: AuditLog,
        audit_store: PgAuditStore,
        personalities: PersonalityStore,
        tools: ToolsEngine,
        broadcast: Notices | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.audit = audit
        self.audit_store = audit_store
        self.personalities = personalities
        self.tools_engine = tools
        self.broadcast = broadcast or Broadcaster(None)  # other nodes reload/refresh as this one did
        self.accounts = Accounts(auth)

    def _admin(self, principal: Principal, action: str, request_id: str | None, **detail: Any) -> None:
        self.auth.require_admin(principal, action, request_id=request_id)
        self.audit.record(
            f"admin.{action}", user_id=principal.user_id, user_name=principal.name, request_id=request_id, detail=detail
        )

    async def reload_personalities(self, principal: Principal, *, request_id: str | None = None) -> list[Personality]:
        self.auth.require_admin(principal, "personalities.reload", request_id=request_id)
        try:
            items = self.personalities.reload()
        except PersonalityError as exc:
            self.audit.record(
                "admin.personalities.reload",
                user_id=principal.user_id,
                user_name=principal.name,
                request_id=request_id,
                outcome="error",
                detail={"problems": exc.problems[:20]},
            )
            raise _invalid("personalities not reloaded", exc.problems) from None
        self.audit.record(
            "admin.personalities.reload",
            user_id=principal.user_id,
            user_name=principal.name,
            request_id=request_id,
            detail={"count": len(items)},
        )
        await self.broadcast.publish("personalities.reload")
        return self.personalities.all()

    def tools(self, principal: Principal, *, request_id: str | None = None) -> list[dict[str, Any]]:
        self._admin(principal, "tools.list", request_id)
        return self.tools_engine.list()

    def tool_servers(self, principal: Principal, *, request_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Each MCP server's health (up or not, and why), shown next to the tool list."""
        self.auth.require_admin(principal, "tools.list", request_id=request_id)
        return self.tools_engine.health()

    async def refresh_tools(self, principal: Principal, *, request_id: str | None = None) -> list[dict[str, Any]]:
        """Re-read config/tools.yaml (the whole configuration is validated), reconnect MCP servers
        that changed or are down, ask the live ones for their tools again, and swap the tool set."""
        self.auth.require_admin(principal, "tools.refresh", request_id=request_id)
        try:
            fresh = load_settings(self.settings.config_dir)
            await self.tools_engine.refresh(fresh.tools)
        except ConfigError as exc:
            raise _invalid("tools not refreshed", exc.problems) from None
        except ToolsConfigError as exc:
            raise _invalid("tools not refreshed", [f"tools.yaml: {p}" for p in exc.problems]) from None
        down = sorted(n for n, h in self.tools_engine.health().items() if not h["ok"])
        detail = {"tools": self.tools_engine.catalog.names(), "servers_down": down}
        self.audit.record(
            "admin.tools.refresh",
            user_id=principal.user_id,
            user_name=principal.name,
            request_id=request_id,
            detail=detail,
        )
        await self.broadcast.publish("tools.refresh")
        return self.tools_engine.list()

    def config(self, principal: Principal, *, request_id: str | None = None) -> dict[str, Any]:
        """The effective configuration with every secret replaced by `***`."""
        self._admin(principal, "config.read", request_id)
        return {"files": self.settings.files, **redacted(self.settings)}

    async def audit_events(
        self,
        principal: Principal,
        *,
        type: str | None = None,
        user_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
        request_id: str | None = None,
    ) -> Page[AuditRecord]:
        self._admin(principal, "audit.read", request_id, type=type, user_id=user_id)
        if user_id is not None:
            check_uuid(user_id, "user_id")
        return await self.audit_store.query(
            type=type, user_id=user_id, since=since, until=until, limit=check_limit(limit), cursor=cursor
        )

    async def create_user(
        self,
        principal: Principal,
        name: str,
        *,
        role: str = "user",
        password: str | None = None,
        rate_limit_rpm: float | None = None,
        rate_limit_burst: int | None = None,
        request_id: str | None = None,
    ) -> tuple[UserRecord, str]:
        self.auth.require_admin(principal, "users.create", request_id=request_id)
        return await self.auth.create_user(
            name,
            role,
            password=password,
            rate_limit_rpm=rate_limit_rpm,
            rate_limit_burst=rate_limit_burst,
            key_name="admin-api",
            by=principal,
            request_id=request_id,
        )

    async def users(
        self, principal: Principal, *, limit: int = 100, cursor: str | None = None, request_id: str | None = None
    ) -> Page[UserRecord]:
        self._admin(principal, "users.list", request_id)
        return await self.accounts.list_users(limit=check_limit(limit), cursor=cursor)

    async def user_keys(
        self,
        principal: Principal,
        user_id: str,
        *,
        limit: int = 100,
        cursor: str | None = None,
        request_id: str | None = None,
    ) -> tuple[UserRecord, Page[KeyRecord]]:
        """The user and a page of their keys (GET of the user shows the first page)."""
        self._admin(principal, "users.read", request_id, user_id=user_id)
        return await self.accounts.keys(user_id, limit=check_limit(limit), cursor=cursor)

    async def update_user(
        self,
        principal: Principal,
        user_id: str,
        *,
        disabled: bool | None = None,
        role: str | None = None,
        request_id: str | None = None,
    ) -> UserRecord:
        self.auth.require_admin(principal, "users.update", request_id=request_id)
        return await self.accounts.update_user(
            user_id, disabled=disabled, role=role, by=principal, request_id=request_id
        )

    async def add_key(
        self,
        principal: Principal,
        user_id: str,
        *,
        name: str | None = None,
        rate_limit_rpm: float | None = None,
        rate_limit_burst: int | None = None,
        request_id: str | None = None,
    ) -> tuple[KeyRecord, str]:
        self.auth.require_admin(principal, "users.keys.create", request_id=request_id)
        return await self.accounts.add_key(
            user_id,
            name=name,
            rate_limit_rpm=rate_limit_rpm,
            rate_limit_burst=rate_limit_burst,
            by=principal,
            request_id=request_id,
        )

    async def revoke_key(
        self, principal: Principal, user_id: str, key_id: str, *, request_id: str | None = None
    ) -> KeyRecord:
        self.auth.require_admin(principal, "users.keys.revoke", request_id=request_id)
        return await self.accounts.revoke_key(key_id, user_id=user_id, by=principal, request_id=request_id)

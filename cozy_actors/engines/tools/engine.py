"""ToolsEngine: the built-in tools plus every MCP server of `config/tools.yaml`, kept in one
ToolCatalog that the Turn reads.

The catalog is only ever swapped whole (`ToolCatalog.replace`, no await in between), so a turn
sees either the old set or the new one, never half of each. Name clashes: built-ins win, then
servers in file order; a skipped tool is logged and named in the server's health. Every call
through the catalog becomes a `tool.call` audit event (see `audit.py`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cozy_actors.config.tools import MCPServerConfig, ToolsConfig

from .audit import ToolCallRecord
from .base import Tool, ToolCatalog
from .builtin import BUILTIN_TOOLS
from .mcp import MCPConnection, to_tools

log = logging.getLogger("cozy.tools")


class ToolsConfigError(Exception):
    """`config/tools.yaml` names something that cannot exist; `problems` are `key: reason` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check_config(config: ToolsConfig) -> None:
    """What pydantic cannot check on its own: built-in names and prefixed name clashes between servers."""
    problems = [f"builtin: unknown built-in tool {n!r}" for n in config.builtin if n not in BUILTIN_TOOLS]
    prefixes = [s.tool_prefix for s in config.mcp_servers if s.enabled]
    for i, server in enumerate(config.mcp_servers):
        if server.enabled and prefixes.count(server.tool_prefix) > 1:
            problems.append(f"mcp_servers.{i}.prefix: {server.tool_prefix!r} is used by another server")
    if problems:
        raise ToolsConfigError(problems)


class ToolsEngine:
    def __init__(self, config: ToolsConfig, *, audit: Any = None, catalog: ToolCatalog | None = None) -> None:
        check_config(config)
        self.config = config
        self.audit = audit  # an AuditLog (record() is synchronous and never blocks)
        self.catalog = catalog or ToolCatalog()
        self.catalog.on_call = self._audit
        self.servers: dict[str, MCPConnection] = {
            s.name: self._connection(s, config) for s in config.mcp_servers if s.enabled
        }  # not connected yet: `start()` does that
        self.skipped: dict[str, list[str]] = {}
        self._lock = asyncio.Lock()
        self._publish()  # built-ins are usable before any MCP server is connected

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect every enabled MCP server concurrently, each within its `connect_timeout_s`.
        A server that fails is logged and reported unhealthy; start-up goes on without its tools."""
        await self.refresh()

    async def close(self) -> None:
        async with self._lock:
            servers, self.servers = list(self.servers.values()), {}
            await asyncio.gather(*(s.close() for s in servers), return_exceptions=True)
            self._publish()

    async def refresh(self, config: ToolsConfig | None = None) -> list[Tool]:
        """Re-discover: with a new `config`, servers removed or changed are closed and new ones
        started; live servers are asked for their tools again, dead ones reconnected. The catalog
        is swapped once at the end. Raises ToolsConfigError (nothing changed) on a bad config."""
        if config is not None:
            check_config(config)
        async with self._lock:
            if config is not None:
                await self._reconcile(config)
                self.config = config
            await asyncio.gather(*(self._rediscover(c) for c in self.servers.values()))
            self._publish()
            return self.catalog.all()

    async def _reconcile(self, config: ToolsConfig) -> None:
        wanted = {s.name: s for s in config.mcp_servers if s.enabled}
        stale = [c for name, c in self.servers.items() if _changed(c, wanted.get(name), config)]
        for conn in stale:
            del self.servers[conn.name]
        await asyncio.gather(*(c.close() for c in stale), return_exceptions=True)
        for name, server in wanted.items():
            if name not in self.servers:
                self.servers[name] = self._connection(server, config)
        self.servers = {name: self.servers[name] for name in wanted}  # file order

    def _connection(self, server: MCPServerConfig, config: ToolsConfig) -> MCPConnection:
        conn = MCPConnection(server, call_timeout_s=config.call_timeout_s)
        conn.on_down = self._server_down
        return conn

    async def _rediscover(self, conn: MCPConnection) -> None:
        if not await conn.relist():
            await conn.connect()

    def _server_down(self, conn: MCPConnection) -> None:
        """A server's connection dropped mid-life: its tools leave the catalog now (a refresh
        reconnects it). Synchronous, so no turn can pick them up after this returns."""
        if self.servers.get(conn.name) is conn:
            self._publish()

    def _publish(self) -> None:
        """Build the whole tool set, then swap it into the catalog in one step."""
        tools: dict[str, Tool] = {n: BUILTIN_TOOLS[n] for n in self.config.builtin}
        self.skipped = {}
        for conn in self.servers.values():
            if not conn.up:
                continue
            found, skipped = to_tools(conn)
            for tool in found:
                if tool.name in tools:
                    skipped.append(f"{tool.name}: name already taken by {tools[tool.name].source}")
                else:
                    tools[tool.name] = tool
            if skipped:
                log.warning("mcp server %s: skipped tool(s): %s", conn.name, "; ".join(skipped))
                self.skipped[conn.name] = skipped
        self.catalog.replace(tools.values(), allowed_side_effects=self.config.allowed_side_effects)

    # --- views -------------------------------------------------------------------------------
    def list(self) -> list[dict[str, Any]]:
        """Every tool in the catalog as `GET /v1/tools` shows it (`offered`: allowed by the
        side-effect policy; a personality's allowlist and the request narrow it further)."""
        allowed = self.catalog.allowed_side_effects
        return [
            {
                "name": t.name,
                "object": "tool",
                "description": t.description,
                "parameters": t.parameters,
                "side_effect": t.side_effect,
                "source": t.source,
                "offered": t.side_effect in allowed,
            }
            for t in self.catalog.all()
        ]

    def health(self) -> dict[str, dict[str, Any]]:
        """Per MCP server (`/ready` detail, `GET /v1/tools`): up or not, and why."""
        out: dict[str, dict[str, Any]] = {}
        for name, conn in self.servers.items():
            entry = conn.health()
            if name in self.skipped:
                entry["skipped"] = self.skipped[name]
            out[name] = entry
        return out

    # --- audit -------------------------------------------------------------------------------
    def _audit(self, record: ToolCallRecord) -> None:
        if self.audit is None:
            return
        caller = record.caller
        self.audit.record(
            "tool.call",
            user_id=caller.user_id if caller else None,
            user_name=caller.user_name if caller else None,
            request_id=caller.request_id if caller else None,
            outcome="ok" if record.ok else "error",
            resource=f"tool:{record.tool}",
            detail=record.audit_detail(),
        )


def _changed(conn: MCPConnection, server: MCPServerConfig | None, config: ToolsConfig) -> bool:
    """Reconnect when the server is gone from the config or anything about it changed."""
    if server is None:
        return True
    return server != conn.config or (server.timeout_s is None and config.call_timeout_s != conn.call_timeout_s)

"""One MCP server as a source of tools, over the official SDK's stdio or streamable HTTP client.

The SDK's transports and ClientSession are anyio context managers that must be entered and left by
the same task, so each connection owns a runner task that holds them open until `close()`. Calls
come from any task (the Turn's) through the live ClientSession. A server that does not come up
within `connect_timeout_s`, or whose connection drops, is marked down with the reason: its tools
then fail with a tool error the model can read, and the ToolsEngine drops them from the catalog
until a refresh reconnects it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any, TextIO

import anyio
import jsonschema
import mcp_types
import orjson
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import CONNECTION_CLOSED, REQUEST_TIMEOUT

from cozy_actors.config.tools import MCPServerConfig

from .base import SideEffect, Tool, ToolError

log = logging.getLogger("cozy.tools.mcp")

LEVELS: tuple[SideEffect, ...] = ("read-only", "write", "network", "dangerous")  # least to most trusted-needed
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a function name
MAX_PAGES = 50
MAX_RESULT_CHARS = 32_000  # a tool result goes into the prompt: bound it
MAX_DESCRIPTION = 1024
CLOSE_TIMEOUT_S = 10.0  # the SDK's own stdio shutdown is bounded at ~6.5 s


class MCPConnection:
    """A connected (or failed) MCP server: its state, its tools as the SDK listed them, and calls."""

    def __init__(self, config: MCPServerConfig, *, call_timeout_s: float) -> None:
        self.config = config
        self.name = config.name
        self.call_timeout_s = config.timeout_s or call_timeout_s
        self.state = "idle"  # idle | connecting | up | down | closed
        self.error: str | None = None
        self.tools: list[mcp_types.Tool] = []
        self.server_info: str | None = None
        self.connected_at: float | None = None
        self.on_down: Callable[[MCPConnection], None] | None = None  # the engine drops our tools
        self._session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._winding_down: set[asyncio.Task[None]] = set()

    @property
    def up(self) -> bool:
        return self.state == "up" and self._session is not None

    def health(self) -> dict[str, Any]:
        """What `/ready` and `GET /v1/tools` say about this server."""
        return {
            "ok": self.up,
            "state": self.state,
            "transport": self.config.transport,
            "tools": len(self.tools) if self.up else 0,
            "detail": self.error if not self.up else self.server_info,
        }

    # --- lifecycle ---------------------------------------------------------------------------
    async def connect(self) -> bool:
        """Start the server, initialize and list its tools within `connect_timeout_s`.
        Never raises: a failure leaves the connection `down` with `error` set, and the failed
        attempt winds down in the background (a stdio process may take seconds to stop)."""
        if self._task is not None:
            await self.close()
        self.state, self.error, self.tools = "connecting", None, []
        self._stop = asyncio.Event()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(ready), name=f"mcp:{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.config.connect_timeout_s)
        except TimeoutError:
            self._fail(f"no answer within {self.config.connect_timeout_s:g} s")
            self._abandon()
        except Exception as exc:
            self._fail(_describe(exc))
            self._abandon()
        if not ready.done():
            ready.add_done_callback(_consume)  # the abandoned attempt's outcome is no longer news
        if self.up:
            log.info("mcp server %s up: %d tool(s)", self.name, len(self.tools))
        else:
            log.warning("mcp server %s unavailable: %s", self.name, self.error)
        return self.up

    def _abandon(self) -> None:
        """Stop a failed attempt without waiting for it; `close()` waits for it later."""
        task, self._task = self._task, None
        if self._stop is not None:
            self._stop.set()
        if self._scope is not None:
            self._scope.cancel()
        if task is not None and not task.done():
            self._winding_down.add(task)
            task.add_done_callback(self._winding_down.discard)

    async def _run(self, ready: asyncio.Future[None]) -> None:
        """Own the SDK contexts for the life of the connection (entered and left on this task)."""
        assert self._stop is not None
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                scope.deadline = anyio.current_time() + self.config.connect_timeout_s + 1  # backstop
                async with AsyncExitStack() as stack:
                    read, write = await stack.enter_async_context(self._transport(stack))
                    session = await stack.enter_async_context(ClientSession(read, write))
                    init = await session.initialize()
                    self.tools = await _list_tools(session)
                    scope.deadline = math.inf
                    info = init.server_info
                    self.server_info = f"{info.name} {info.version}".strip() if info else None
                    self._session, self.state, self.connected_at = session, "up", time.time()
                    if not ready.done():
                        ready.set_result(None)
                    await self._stop.wait()
            if scope.cancelled_caught and not ready.done():
                ready.set_exception(TimeoutError(f"no answer within {self.config.connect_timeout_s:g} s"))
        except Exception as exc:  # the SDK raises ExceptionGroups from its task groups
            if not ready.done():
                ready.set_exception(exc)
            else:
                self._mark_down(_describe(exc))
        finally:
            self._session = None
            if not ready.done():
                ready.set_exception(ConnectionError("connection closed"))

    def _transport(self, stack: AsyncExitStack) -> Any:
        cfg = self.config
        if cfg.transport == "stdio":
            assert cfg.command is not None
            # `python` means CozyEngine's own interpreter, so a server shipped as a module of an
            # installed package (like the example) runs whatever PATH holds.
            command = sys.executable if cfg.command in ("python", "python3") else cfg.command
            params = StdioServerParameters(command=command, args=cfg.args, env=cfg.env or None, cwd=cfg.cwd)
            return stdio_client(params, errlog=_errlog())
        assert cfg.url is not None
        headers = {k: v.get_secret_value() for k, v in cfg.headers.items()}
        client = create_mcp_http_client(headers=headers or None)
        stack.push_async_callback(client.aclose)
        return streamable_http_client(cfg.url, http_client=client)

    async def close(self) -> None:
        """Stop the runner (and so a stdio server's process), and any failed attempt still
        winding down; bounded."""
        task, self._task = self._task, None
        if self._stop is not None:
            self._stop.set()
        if task is not None and self.state == "connecting" and self._scope is not None:
            self._scope.cancel()
        tasks = [t for t in (task, *self._winding_down) if t is not None and not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        self._session = None
        self.state, self.tools = "closed", []

    def _fail(self, reason: str) -> None:
        self.state, self.error, self.tools = "down", reason, []

    def _mark_down(self, reason: str) -> None:
        if self.state in ("down", "closed"):
            return
        log.warning("mcp server %s went down: %s", self.name, reason)
        self._session = None
        self._fail(reason)
        if self.on_down is not None:
            self.on_down(self)

    async def relist(self) -> bool:
        """Ask a live server for its tools again; a dead one comes back False (reconnect it)."""
        session = self._session
        if not self.up or session is None:
            return False
        try:
            with anyio.fail_after(self.config.connect_timeout_s):
                self.tools = await _list_tools(session)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._mark_down("connection closed")
                return False
            log.warning("mcp server %s: tools/list failed: %s", self.name, exc.message)
        except TimeoutError:
            log.warning("mcp server %s: tools/list timed out; keeping the previous list", self.name)
        return self.up

    # --- calls -------------------------------------------------------------------------------
    async def call(self, tool: str, arguments: dict[str, Any]) -> str:
        """Run one tool; text contents joined. `isError` and transport failures raise ToolError."""
        session = self._session
        if not self.up or session is None:
            raise ToolError(f"MCP server {self.name!r} is unavailable ({self.error or self.state})")
        try:
            # The catalog's own timeout normally fires first; this one stops the SDK waiting forever.
            result = await session.call_tool(tool, arguments, read_timeout_seconds=self.call_timeout_s + 1)
        except MCPError as exc:
            if exc.code == REQUEST_TIMEOUT:
                raise TimeoutError from exc
            if exc.code == CONNECTION_CLOSED:
                self._mark_down("connection closed")
                raise ToolError(f"MCP server {self.name!r} went away during the call") from exc
            raise ToolError(f"MCP server {self.name!r} refused the call: {exc.message}") from exc
        text = result_text(result)
        if result.is_error:
            raise ToolError(text or f"tool {tool} failed")
        return text


def result_text(result: mcp_types.CallToolResult) -> str:
    """What the model reads: the text contents joined; other content named; bounded."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        elif isinstance(block, mcp_types.EmbeddedResource) and isinstance(
            block.resource, mcp_types.TextResourceContents
        ):
            parts.append(block.resource.text)
        else:
            parts.append(f"[{getattr(block, 'type', 'content')} omitted]")
    text = "\n".join(parts)
    if not text and result.structured_content is not None:
        text = orjson.dumps(result.structured_content).decode()
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + f"\n[truncated: {len(text) - MAX_RESULT_CHARS} more characters]"
    return text


def side_effect_of(config: MCPServerConfig, tool: mcp_types.Tool) -> SideEffect:
    """A configured per-tool level is exact. Otherwise the server's `side_effect` is a floor that the
    tool's annotations may raise but never lower: they come from the server, which we may not trust."""
    if tool.name in config.tool_side_effects:
        return config.tool_side_effects[tool.name]
    level = LEVELS.index(config.side_effect)
    hints = tool.annotations
    # Missing hints take the MCP spec's defaults: readOnlyHint false, and then destructiveHint true.
    # So a tool that does not say it is read-only or non-destructive is graded `dangerous`.
    read_only = hints is not None and hints.read_only_hint is True
    if not read_only:
        level = max(level, LEVELS.index("write"))
        if hints is None or hints.destructive_hint is not False:
            level = max(level, LEVELS.index("dangerous"))
    if hints is not None and hints.open_world_hint is True:
        level = max(level, LEVELS.index("network"))
    return LEVELS[level]


def to_tools(conn: MCPConnection) -> tuple[list[Tool], list[str]]:
    """The connection's tools as catalog Tools (prefixed names), and why any were skipped."""
    cfg = conn.config
    tools: list[Tool] = []
    skipped: list[str] = []
    for t in conn.tools:
        name = cfg.tool_prefix + t.name
        if not TOOL_NAME.match(name):
            skipped.append(f"{t.name}: {name!r} is not a valid function name")
            continue
        schema = dict(t.input_schema or {})
        schema.setdefault("type", "object")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            skipped.append(f"{t.name}: invalid input schema: {exc.message}")
            continue
        description = (t.description or t.title or t.name).strip()[:MAX_DESCRIPTION]
        tools.append(
            Tool(
                name=name,
                description=description,
                parameters=schema,
                side_effect=side_effect_of(cfg, t),
                handler=_handler(conn, t.name),
                source=f"mcp:{cfg.name}",
                timeout_s=conn.call_timeout_s,
            )
        )
    return tools, skipped


def _handler(conn: MCPConnection, tool: str) -> Callable[[dict[str, Any]], Any]:
    async def call(arguments: dict[str, Any]) -> str:
        return await conn.call(tool, arguments)

    return call


async def _list_tools(session: ClientSession) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _consume(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _describe(exc: BaseException) -> str:
    """A one-line reason, digging the first real error out of anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return exc.message
    if isinstance(exc, TimeoutError) and str(exc):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_DEVNULL: TextIO | None = None


def _errlog() -> TextIO:
    """Where a stdio server's stderr goes: ours when it is a real file (pytest's capture is not)."""
    global _DEVNULL
    try:
        sys.stderr.fileno()
        return sys.stderr
    except (AttributeError, OSError, ValueError):
        if _DEVNULL is None:
            _DEVNULL = open(os.devnull, "w")  # one for the process's lifetime
        return _DEVNULL

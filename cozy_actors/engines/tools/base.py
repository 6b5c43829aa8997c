"""Tool definitions and the catalog the Turn asks for "what may I offer, and run this call".

Policy lives here, not in the Turn: offered = personality allowlist ∩ request allowed_tools ∩
allowed side-effect levels. Execution validates arguments against the tool's JSON schema first, so
a model's malformed call becomes a tool error message it can read, never a crash.

A handler may be a coroutine function (I/O: MCP) or a plain function (CPU: the built-ins); plain
ones run on a small thread pool of their own (`offload.py`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
import orjson

from cozy_actors.observability.metrics import TOOL_CALLS, labelled

from .audit import ToolCaller, ToolCallRecord, args_digest
from .offload import run_blocking

SideEffect = Literal["read-only", "write", "network", "dangerous"]
# async (awaited on the loop) or sync (run on the tool thread pool); either is bounded by the turn's timeout
ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]] | Callable[[dict[str, Any]], Any]
CallHook = Callable[[ToolCallRecord], None]
log = logging.getLogger("cozy.tools")


class ToolError(Exception):
    """A tool call failed in a way the model should be told about."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    side_effect: SideEffect
    handler: ToolHandler
    source: str = "builtin"  # builtin | mcp:<server>
    timeout_s: float | None = None  # its own per-call bound (MCP servers), under the turn's

    @property
    def blocking(self) -> bool:
        """A plain-function handler: it runs off the event loop (see offload.py)."""
        return not inspect.iscoroutinefunction(self.handler)

    def schema(self) -> dict[str, Any]:
        """The OpenAI `tools` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolResult:
    name: str
    ok: bool
    content: str
    latency_s: float


class ToolCatalog:
    def __init__(
        self,
        tools: Iterable[Tool] = (),
        *,
        allowed_side_effects: Iterable[str] = ("read-only",),
        on_call: CallHook | None = None,
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self.allowed_side_effects = frozenset(allowed_side_effects)
        self.on_call = on_call  # sees every call (the audit trail); must not block or raise
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> None:
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def all(self) -> list[Tool]:
        return [self._tools[n] for n in sorted(self._tools)]

    def replace(self, tools: Iterable[Tool], *, allowed_side_effects: Iterable[str]) -> None:
        """Swap the whole set at once; every schema is checked first, so a bad tool changes nothing."""
        fresh = ToolCatalog(tools, allowed_side_effects=allowed_side_effects)
        self._tools, self.allowed_side_effects = fresh._tools, fresh.allowed_side_effects

    def offered(self, allowlist: Iterable[str], request_allowed: Iterable[str] | None = None) -> list[Tool]:
        """Tools the model may see for one turn."""
        names = set(allowlist)
        if request_allowed is not None:
            names &= set(request_allowed)
        return [
            t
            for n in sorted(names)
            if (t := self._tools.get(n)) is not None and t.side_effect in self.allowed_side_effects
        ]

    async def execute(
        self,
        tool: Tool,
        arguments: str,
        *,
        timeout: float,
        caller: ToolCaller | None = None,
        call_id: str | None = None,
    ) -> ToolResult:
        """Run one call; every failure comes back as a result with `ok=False` the model can read.
        The call is bounded by `timeout` (the turn's) and the tool's own `timeout_s`, whichever is
        smaller, and reported to `on_call` (audit) whatever happens."""
        start = time.perf_counter()
        if tool.timeout_s is not None:
            timeout = min(timeout, tool.timeout_s)
        args: Any = None
        error: str | None = None
        try:
            args = orjson.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise jsonschema.ValidationError("arguments must be a JSON object")
            jsonschema.validate(args, tool.parameters)
            if tool.blocking:
                value = await run_blocking(tool.handler, args, timeout=timeout)
            else:
                value = await asyncio.wait_for(tool.handler(args), timeout)
            content = value if isinstance(value, str) else orjson.dumps(value).decode()
        except orjson.JSONDecodeError as exc:
            content, error = _error(f"arguments are not valid JSON: {exc}"), "invalid_json"
        except jsonschema.ValidationError as exc:
            content, error = _error(f"invalid arguments: {exc.message}"), "invalid_arguments"
        except TimeoutError:
            content, error = _error(f"tool {tool.name} timed out after {timeout:g} s"), "timeout"
        except ToolError as exc:
            content, error = _error(str(exc)), "tool_error"
        except Exception as exc:
            content, error = _error(f"tool {tool.name} failed: {type(exc).__name__}"), "failed"
        ok = error is None
        latency = time.perf_counter() - start
        labelled(TOOL_CALLS, tool.name, "ok" if ok else "error").inc()
        if self.on_call is not None:
            digest = args_digest(arguments, args)
            record = ToolCallRecord(
                tool.name, tool.source, tool.side_effect, digest, ok, error, latency, caller, call_id
            )
            try:
                self.on_call(record)
            except Exception:
                log.exception("tool call hook failed for %s", tool.name)
        return ToolResult(tool.name, ok, content, latency)


def _error(message: str) -> str:
    return orjson.dumps({"error": message}).decode()

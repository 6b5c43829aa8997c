"""Tools policy without processes: config validation, side-effect levels from config and MCP
annotations, what the catalog offers, argument hashing, result text."""

from __future__ import annotations

import hashlib
from typing import Any

import mcp_types
import pytest
from pydantic import ValidationError

from cozy_actors.config.tools import MCPServerConfig, ToolsConfig
from cozy_actors.engines.tools.audit import ToolCaller, args_digest
from cozy_actors.engines.tools.base import Tool, ToolCatalog
from cozy_actors.engines.tools.engine import ToolsConfigError, ToolsEngine, check_config
from cozy_actors.engines.tools.mcp import MCPConnection, result_text, side_effect_of, to_tools

from .helpers import AuditSpy, notes_server, tools_config


def mcp_tool(name: str = "t", schema: dict[str, Any] | None = None, **hints: Any) -> mcp_types.Tool:
    annotations = mcp_types.ToolAnnotations(**hints) if hints else None
    return mcp_types.Tool(name=name, input_schema=schema or {"type": "object"}, annotations=annotations)


def server(**overrides: Any) -> MCPServerConfig:
    return MCPServerConfig.model_validate({"name": "s", "command": "x", **overrides})


# --- configuration ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ({"name": "a"}, "needs `command`"),
        ({"name": "a", "transport": "http"}, "needs `url`"),
        ({"name": "a", "transport": "http", "url": "ftp://x"}, "needs `url`"),
        ({"name": "a", "command": "x", "url": "http://x/mcp"}, "are for transport http"),
        ({"name": "a", "transport": "http", "url": "http://x/mcp", "command": "x"}, "are for transport stdio"),
        ({"name": "a b", "command": "x"}, "pattern"),
        ({"name": "a", "command": "x", "side_effect": "risky"}, "side_effect"),
        ({"name": "a", "command": "x", "tool_side_effects": {"t": "nope"}}, "tool_side_effects"),
        ({"name": "a", "command": "x", "timeout_s": 0}, "timeout_s"),
        ({"name": "a", "command": "x", "colour": "red"}, "colour"),
    ],
)
def test_bad_server_entries_are_refused(entry: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as exc:
        ToolsConfig.model_validate({"mcp_servers": [entry]})
    assert needle in str(exc.value)


def test_duplicate_names_prefix_clashes_and_unknown_builtins() -> None:
    with pytest.raises(ValidationError, match="duplicate mcp_servers"):
        tools_config(notes_server("a"), notes_server("a"))
    with pytest.raises(ToolsConfigError) as exc:
        check_config(tools_config(notes_server("a", prefix="x_"), notes_server("b", prefix="x_"), builtin=["nope"]))
    assert exc.value.problems == [
        "builtin: unknown built-in tool 'nope'",
        "mcp_servers.0.prefix: 'x_' is used by another server",
        "mcp_servers.1.prefix: 'x_' is used by another server",
    ]
    check_config(tools_config(notes_server("a", prefix="x_"), notes_server("b", prefix="x_", enabled=False)))


def test_prefix_defaults_and_disabled_blank() -> None:
    assert server().tool_prefix == "s_"
    assert server(prefix="").tool_prefix == ""
    assert server(prefix=None).tool_prefix == "s_"
    assert server(enabled="").enabled is False  # `${FLAG:+true}` with FLAG unset
    assert server(timeout_s="").timeout_s is None


# --- side effects -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("floor", "hints", "expected"),
    [
        # No hints at all, or no destructiveHint on a tool that is not read-only: the MCP spec's
        # defaults (readOnlyHint false, destructiveHint true) make it destructive.
        ("read-only", {}, "dangerous"),
        ("read-only", {"read_only_hint": True}, "read-only"),
        ("read-only", {"read_only_hint": False}, "dangerous"),
        ("read-only", {"open_world_hint": False}, "dangerous"),
        ("read-only", {"read_only_hint": False, "destructive_hint": False}, "write"),
        ("read-only", {"destructive_hint": False}, "write"),
        ("read-only", {"read_only_hint": False, "destructive_hint": True}, "dangerous"),
        ("read-only", {"destructive_hint": True}, "dangerous"),
        ("read-only", {"read_only_hint": True, "destructive_hint": True}, "read-only"),  # spec: ignored when read-only
        ("read-only", {"read_only_hint": True, "open_world_hint": True}, "network"),
        ("write", {"read_only_hint": True}, "write"),  # a server cannot talk its way below the floor
        ("dangerous", {"read_only_hint": True}, "dangerous"),
        ("network", {"read_only_hint": False, "destructive_hint": False}, "network"),
        ("network", {"read_only_hint": False}, "dangerous"),
    ],
)
def test_annotations_raise_the_configured_floor(floor: str, hints: dict[str, Any], expected: str) -> None:
    assert side_effect_of(server(side_effect=floor), mcp_tool(**hints)) == expected


def test_a_configured_per_tool_level_is_exact() -> None:
    cfg = server(side_effect="write", tool_side_effects={"t": "read-only", "u": "dangerous"})
    assert side_effect_of(cfg, mcp_tool("t", destructive_hint=True)) == "read-only"
    assert side_effect_of(cfg, mcp_tool("u", read_only_hint=True)) == "dangerous"


def test_to_tools_prefixes_and_skips_what_cannot_be_offered() -> None:
    conn = MCPConnection(server(timeout_s=3), call_timeout_s=10)
    conn.tools = [
        mcp_tool("ok", {"type": "object", "properties": {"a": {"type": "integer"}}}, read_only_hint=True),
        mcp_tool("bad name!"),
        mcp_tool("bad_schema", {"type": "object", "properties": {"a": {"type": 12}}}),
        mcp_tool("x" * 70),
    ]
    tools, skipped = to_tools(conn)
    assert [t.name for t in tools] == ["s_ok"]
    (tool,) = tools
    assert (tool.source, tool.side_effect, tool.timeout_s) == ("mcp:s", "write", 3)
    assert tool.description == "ok"  # no description: the name, so the model still sees something
    assert len(skipped) == 3 and "not a valid function name" in skipped[0] and "invalid input schema" in skipped[1]


def test_offered_is_allowlist_and_request_and_policy() -> None:
    async def noop(args: dict[str, Any]) -> str:
        return ""

    def tool(name: str, level: Any) -> Tool:
        return Tool(name, name, {"type": "object"}, level, noop)

    catalog = ToolCatalog(
        [tool("r", "read-only"), tool("w", "write"), tool("d", "dangerous")],
        allowed_side_effects=["read-only", "write", "network"],
    )
    assert [t.name for t in catalog.offered(["r", "w", "d", "missing"])] == ["r", "w"]
    assert [t.name for t in catalog.offered(["r", "w", "d"], ["w", "d"])] == ["w"]
    assert [t.name for t in catalog.offered(["r"], ["w"])] == []
    catalog.replace(catalog.all(), allowed_side_effects=["read-only", "dangerous"])
    assert [t.name for t in catalog.offered(["r", "w", "d"])] == ["d", "r"]


def test_engine_without_servers_serves_builtins_and_lists_them() -> None:
    engine = ToolsEngine(ToolsConfig(builtin=["calculator"], allowed_side_effects=["read-only"]))
    assert engine.catalog.names() == ["calculator"]
    (entry,) = engine.list()
    assert entry["name"] == "calculator" and entry["source"] == "builtin" and entry["offered"] is True
    assert engine.health() == {}


def test_servers_are_reported_before_start() -> None:
    engine = ToolsEngine(tools_config(notes_server()))
    assert engine.health()["notes"]["state"] == "idle" and engine.health()["notes"]["ok"] is False
    assert engine.catalog.names() == ["calculator", "get_current_time"]


# --- audit and results ------------------------------------------------------------------------
def test_args_digest_is_canonical() -> None:
    a = args_digest('{"b": 1, "a": "x"}', {"b": 1, "a": "x"})
    assert a == args_digest('{"a":"x","b":1}', {"a": "x", "b": 1})
    assert a == hashlib.sha256(b'{"a":"x","b":1}').hexdigest()
    assert args_digest("{bad") == hashlib.sha256(b"{bad").hexdigest()


async def test_every_builtin_call_is_audited_with_a_hash() -> None:
    spy = AuditSpy()
    engine = ToolsEngine(ToolsConfig(), audit=spy)
    calc = engine.catalog.get("calculator")
    assert calc is not None
    caller = ToolCaller("u1", "ann", "req_1", "sess_1", "text")
    ok = await engine.catalog.execute(calc, '{"expression": "6*7"}', timeout=1, caller=caller, call_id="call_1")
    bad = await engine.catalog.execute(calc, '{"expr": "secret-value"}', timeout=1)
    assert ok.ok and not bad.ok
    first, second = spy.events
    assert first["type"] == "tool.call" and first["outcome"] == "ok" and first["resource"] == "tool:calculator"
    assert (first["user_id"], first["user_name"], first["request_id"]) == ("u1", "ann", "req_1")
    assert first["detail"]["args_sha256"] == args_digest("", {"expression": "6*7"})
    assert first["detail"]["session_id"] == "sess_1" and first["detail"]["call_id"] == "call_1"
    assert first["detail"]["source"] == "builtin" and first["detail"]["side_effect"] == "read-only"
    assert second["outcome"] == "error" and second["detail"]["error"] == "invalid_arguments"
    assert "secret-value" not in repr(spy.events)


def test_result_text() -> None:
    text = mcp_types.TextContent(type="text", text="a")
    image = mcp_types.ImageContent(type="image", data="AAAA", mime_type="image/png")
    assert result_text(mcp_types.CallToolResult(content=[text, text])) == "a\na"
    assert result_text(mcp_types.CallToolResult(content=[text, image])) == "a\n[image omitted]"
    assert result_text(mcp_types.CallToolResult(content=[], structured_content={"n": 1})) == '{"n":1}'
    long = mcp_types.TextContent(type="text", text="x" * 40_000)
    out = result_text(mcp_types.CallToolResult(content=[long]))
    assert len(out) < 33_000 and out.endswith("more characters]")

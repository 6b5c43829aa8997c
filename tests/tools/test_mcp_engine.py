"""ToolsEngine against real MCP servers over stdio (the shipped notes example and the quirky test
server): discovery, calls, errors, timeouts, dead servers, refresh, audit, streamable HTTP."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import pytest_asyncio

from cozy_actors.engines.tools.audit import ToolCaller, args_digest
from cozy_actors.engines.tools.engine import ToolsEngine
from tests.support.procs import REPO_ROOT, free_port

from .helpers import NOTES_MODULE, AuditSpy, notes_server, quirky_server, tools_config

NOTES_TOOLS = ["notes_add_note", "notes_list_notes", "notes_lookup_fact", "notes_wipe_notes"]
# A stdio server costs a Python start (~1.5 s of CPU for the SDK's imports): tests that only call
# tools share one notes server and one quirky server for the module, all on one event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def notes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("notes") / "notes.json"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(notes_file: Path) -> Any:
    """One engine with the notes server (notes on disk) and the quirky server (0.5 s per call)."""
    spy = AuditSpy()
    config = tools_config(notes_server(env={"COZY_NOTES_FILE": str(notes_file)}), quirky_server(timeout_s=0.5))
    engine = ToolsEngine(config, audit=spy)
    await engine.start()
    yield engine, spy
    await engine.close()


@pytest_asyncio.fixture(loop_scope="module")
async def engines() -> Any:
    """Build and start engines of the test's own; each is closed (server processes stopped) after it."""
    made: list[ToolsEngine] = []

    async def make(config: Any, audit: Any = None) -> ToolsEngine:
        engine = ToolsEngine(config, audit=audit)
        made.append(engine)
        await engine.start()
        return engine

    yield make
    for engine in made:
        await engine.close()


async def run(engine: ToolsEngine, name: str, arguments: Any, timeout: float = 5, **kw: Any) -> Any:
    tool = engine.catalog.get(name)
    assert tool is not None, engine.catalog.names()
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return await engine.catalog.execute(tool, raw, timeout=timeout, **kw)


def error_of(result: Any) -> str:
    assert not result.ok, result
    return json.loads(result.content)["error"]


def children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


async def test_discovery_maps_names_schemas_and_side_effects(shared: Any) -> None:
    engine, _ = shared
    assert engine.catalog.names() == [
        "calculator",
        "get_current_time",
        *NOTES_TOOLS,
        "t_crash",
        "t_echo",
        "t_extra",
        "t_slow",
    ]
    by_name = {t["name"]: t for t in engine.list()}
    levels = {n: by_name[n]["side_effect"] for n in NOTES_TOOLS}
    assert levels == {
        "notes_add_note": "write",  # readOnlyHint false
        "notes_list_notes": "read-only",
        "notes_lookup_fact": "read-only",
        "notes_wipe_notes": "dangerous",  # destructiveHint true
    }
    # t_crash carries no annotations: the MCP spec's defaults (not read-only, destructive) apply.
    assert by_name["t_crash"]["side_effect"] == "dangerous"
    fact = by_name["notes_lookup_fact"]
    assert fact["source"] == "mcp:notes" and fact["offered"] is True
    assert fact["parameters"]["required"] == ["topic"] and fact["parameters"]["type"] == "object"
    assert "fact" in fact["description"].lower()
    assert by_name["notes_wipe_notes"]["offered"] is False  # dangerous is not in the default policy
    health = engine.health()["notes"]
    assert health["ok"] is True and health["state"] == "up" and health["tools"] == 4 and health["transport"] == "stdio"
    offered = [t.name for t in engine.catalog.offered(NOTES_TOOLS)]
    assert offered == ["notes_add_note", "notes_list_notes", "notes_lookup_fact"]


async def test_calls_results_and_errors_reach_the_model_as_text(shared: Any, notes_file: Path) -> None:
    engine, _ = shared
    notes = notes_file
    ok = await run(engine, "notes_lookup_fact", {"topic": "Eiffel Tower"})
    assert ok.ok and ok.content.startswith("The Eiffel Tower is 330 metres")
    unknown = await run(engine, "notes_lookup_fact", {"topic": "moon"})
    assert "no fact about 'moon'" in error_of(unknown)  # isError from the server -> a tool error
    missing = await run(engine, "notes_lookup_fact", {})
    assert error_of(missing) == "invalid arguments: 'topic' is a required property"  # checked before the call
    wrong_type = await run(engine, "notes_add_note", {"text": 5})
    assert error_of(wrong_type).startswith("invalid arguments: 5 is not of type 'string'")
    assert "not valid JSON" in error_of(await run(engine, "notes_add_note", "{oops"))
    assert not notes.exists()  # nothing invalid reached the server
    added = await run(engine, "notes_add_note", {"text": "buy milk"})
    assert added.ok and added.content == "note 1 saved"
    assert json.loads(notes.read_text()) == ["buy milk"]
    listed = await run(engine, "notes_list_notes", {})
    assert listed.content == "1. buy milk"


async def test_dangerous_tools_only_when_the_policy_lists_them(shared: Any) -> None:
    engine, _ = shared
    assert "notes_wipe_notes" not in [t.name for t in engine.catalog.offered(NOTES_TOOLS)]
    servers = dict(engine.servers)
    allow_all = engine.config.model_copy(
        update={"allowed_side_effects": ["read-only", "write", "network", "dangerous"]}
    )
    try:
        await engine.refresh(allow_all)
        assert "notes_wipe_notes" in [t.name for t in engine.catalog.offered(NOTES_TOOLS)]
        assert engine.servers == servers  # a policy change reconnects nothing
    finally:
        await engine.refresh(
            engine.config.model_copy(update={"allowed_side_effects": ["read-only", "write", "network"]})
        )
    assert "notes_wipe_notes" not in [t.name for t in engine.catalog.offered(NOTES_TOOLS)]


async def test_per_call_timeout_and_the_server_survives_it(shared: Any) -> None:
    engine, _ = shared
    start = time.perf_counter()
    slow = await run(engine, "t_slow", {"seconds": 5}, timeout=10)
    elapsed = time.perf_counter() - start
    assert error_of(slow) == "tool t_slow timed out after 0.5 s" and 0.4 < elapsed < 2
    # The turn's own bound wins when it is smaller.
    assert error_of(await run(engine, "t_slow", {"seconds": 5}, timeout=0.2)) == "tool t_slow timed out after 0.2 s"
    echo = await run(engine, "t_echo", {"text": "still here", "times": 2})
    assert echo.ok and echo.content == "still here still here"


async def test_failing_servers_do_not_block_start_and_are_reported(engines: Any) -> None:
    before = children()
    config = tools_config(
        quirky_server("gone", env={"MCP_TEST_EXIT_AT_START": "1"}),
        {"name": "nosuch", "command": "/nonexistent/mcp-server"},
        {"name": "mute", "command": "sleep", "args": ["60"], "connect_timeout_s": 1},
        {"name": "http", "transport": "http", "url": f"http://127.0.0.1:{free_port()}/mcp", "connect_timeout_s": 2},
    )
    start = time.perf_counter()
    engine = await engines(config)
    assert time.perf_counter() - start < 20  # bounded by the connect timeouts, far from the mute server's 60 s
    health = engine.health()
    assert {n: h["ok"] for n, h in health.items()} == dict.fromkeys(["gone", "nosuch", "mute", "http"], False)
    assert health["gone"]["detail"] == "Connection closed"
    assert "No such file" in health["nosuch"]["detail"]
    assert health["mute"]["detail"] == "no answer within 1 s"
    assert health["http"]["detail"]
    assert engine.catalog.names() == ["calculator", "get_current_time"]
    await engine.close()
    assert children() <= before, "an MCP server process outlived close()"


async def test_a_server_that_dies_loses_its_tools_until_refresh(engines: Any, tmp_path: Path) -> None:
    listed = tmp_path / "tools.txt"
    listed.write_text("echo crash\n")
    engine = await engines(tools_config(quirky_server(env={"MCP_TEST_TOOLS_FILE": str(listed)})))
    echo = engine.catalog.get("t_echo")
    assert echo is not None
    crashed = await run(engine, "t_crash", {})
    assert error_of(crashed) == "MCP server 't' went away during the call"
    assert not [n for n in engine.catalog.names() if n.startswith("t_")]
    assert engine.health()["t"] == {**engine.health()["t"], "ok": False, "state": "down", "detail": "connection closed"}
    # A turn that resolved its tools before the crash gets a clear tool error, not a hang.
    stale = await engine.catalog.execute(echo, '{"text": "x"}', timeout=5)
    assert error_of(stale) == "MCP server 't' is unavailable (connection closed)"
    listed.write_text("echo crash extra\n")  # the restarted server lists one tool more
    await engine.refresh()
    assert engine.health()["t"]["ok"] is True and "t_extra" in engine.catalog.names()
    assert (await run(engine, "t_echo", {"text": "back"})).content == "back"
    # A live server is asked again, not restarted: a changed list shows on the next refresh.
    conn, connected_at = engine.servers["t"], engine.servers["t"].connected_at
    listed.write_text("echo\n")
    seen: set[tuple[str, ...]] = set()

    async def watch() -> None:  # every read of the catalog during the refresh sees one whole set
        while True:
            seen.add(tuple(engine.catalog.names()))
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    tools = await engine.refresh()
    watcher.cancel()
    assert [t.name for t in tools if t.source == "mcp:t"] == ["t_echo"]
    builtins = ("calculator", "get_current_time")
    assert seen <= {(*builtins, "t_crash", "t_echo", "t_extra"), (*builtins, "t_echo")}
    assert engine.servers["t"] is conn and conn.connected_at == connected_at


async def test_refresh_with_a_new_config_adds_removes_keeps_and_restarts(engines: Any) -> None:
    engine = await engines(tools_config(quirky_server("a")))
    a = engine.servers["a"]
    await engine.refresh(tools_config(quirky_server("a"), quirky_server("b", timeout_s=2), builtin=["calculator"]))
    assert engine.servers["a"] is a  # unchanged: kept as it was
    names = engine.catalog.names()
    assert "get_current_time" not in names and "a_echo" in names and "b_echo" in names
    b = engine.servers["b"]
    await engine.refresh(tools_config(quirky_server("b", timeout_s=3)))  # a removed, b changed
    assert list(engine.servers) == ["b"] and a.state == "closed" and b.state == "closed"
    assert engine.servers["b"].up and engine.catalog.get("b_slow").timeout_s == 3  # type: ignore[union-attr]
    assert not [n for n in engine.catalog.names() if n.startswith("a_")]


async def test_every_mcp_call_is_audited_with_an_argument_hash(shared: Any) -> None:
    engine, spy = shared
    spy.events.clear()
    caller = ToolCaller(user_id="u-7", user_name="zoe", request_id="req-9", session_id="s-1", channel="realtime")
    await run(engine, "notes_add_note", {"text": "my secret plan"}, caller=caller, call_id="call_3")
    await run(engine, "notes_lookup_fact", {"topic": "moon"})
    ok, failed = spy.events
    assert ok["type"] == "tool.call" and ok["resource"] == "tool:notes_add_note" and ok["outcome"] == "ok"
    assert (ok["user_id"], ok["user_name"], ok["request_id"]) == ("u-7", "zoe", "req-9")
    detail = ok["detail"]
    assert detail["args_sha256"] == args_digest("", {"text": "my secret plan"})
    assert (detail["source"], detail["side_effect"], detail["channel"]) == ("mcp:notes", "write", "realtime")
    assert (detail["session_id"], detail["call_id"]) == ("s-1", "call_3") and detail["latency_ms"] > 0
    assert failed["outcome"] == "error" and failed["detail"]["error"] == "tool_error" and failed["user_id"] is None
    assert "secret plan" not in repr(spy.events) and "moon" not in repr(spy.events)


async def test_streamable_http_transport(engines: Any) -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        NOTES_MODULE,
        "--transport",
        "http",
        "--port",
        str(port),
        cwd=str(REPO_ROOT),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        async with httpx.AsyncClient() as client:
            for _ in range(100):  # until it listens
                try:
                    await client.get(url, timeout=0.5)
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        server = {
            "name": "web",
            "transport": "http",
            "url": url,
            "headers": {"X-Test": "1"},
            "side_effect": "read-only",
        }
        engine = await engines(tools_config(server))
        assert engine.health()["web"]["ok"] is True and engine.health()["web"]["transport"] == "http"
        fact = await run(engine, "web_lookup_fact", {"topic": "water"})
        assert fact.ok and "100 degrees" in fact.content
        assert engine.catalog.get("web_wipe_notes").side_effect == "dangerous"  # type: ignore[union-attr]
        await engine.close()
    finally:
        proc.terminate()
        await proc.wait()

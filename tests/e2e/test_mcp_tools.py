"""MCP tools end to end: `cozy serve` with a copy of config/ whose tools.yaml lists the example
notes server and the quirky test server (real stdio) plus one that cannot start, and a test
personality allowed some of their tools. openai SDK -> CozyEngine -> stub model -> CozyEngine's
tool loop -> MCP server, and back."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.e2e.conftest import ADMIN_KEY, STUB_MODEL, CozyServer, start_cozy_server, tool_names, user
from tests.support.procs import REPO_ROOT, StubLLMServer

NOTES_MODULE = "cozy_actors.engines.tools.examples.notes_server"
QUIRKY = str(REPO_ROOT / "tests" / "support" / "mcp_test_server.py")
PERSONALITY = {
    "id": "mcp-tester",
    "name": "MCP tester",
    "version": "1.0",
    "description": "Test personality allowed some MCP tools.",
    "system_prompt": "You test tools.",
    # notes_wipe_notes is allowed here but `dangerous`: the server policy never offers it.
    "tools": ["calculator", "notes_lookup_fact", "notes_add_note", "notes_wipe_notes", "q_slow", "q_extra"],
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mcp-e2e")
    shutil.copytree(REPO_ROOT / "config", root / "config")
    shutil.copytree(REPO_ROOT / "personalities", root / "personalities")
    app = root / "config" / "app.yaml"  # loop-lag admission is not under test here (and a busy CI trips it)
    app.write_text(app.read_text().replace("max_loop_lag_ms: 500", "max_loop_lag_ms:"))
    (root / "personalities" / "mcp-tester.yaml").write_text(yaml.safe_dump(PERSONALITY))
    paths = {"root": root, "notes": root / "notes.json", "listed": root / "quirky-tools.txt"}
    paths["notes"].write_text('["first note"]')
    paths["listed"].write_text("slow echo\n")
    write_tools(paths, gone_command="/nonexistent/mcp-server")
    return paths


def write_tools(paths: dict[str, Path], *, gone_command: str) -> None:
    servers: list[dict[str, Any]] = [
        {
            "name": "notes",
            "command": "python",
            "args": ["-m", NOTES_MODULE],
            "side_effect": "read-only",
            "env": {"COZY_NOTES_FILE": str(paths["notes"])},
            "cwd": str(REPO_ROOT),
        },
        {
            "name": "quirky",
            "command": sys.executable,
            "args": [QUIRKY],
            "prefix": "q_",
            "timeout_s": 0.5,
            "env": {"MCP_TEST_TOOLS_FILE": str(paths["listed"])},
            "cwd": str(REPO_ROOT),
        },
        {
            "name": "gone",
            "command": gone_command,
            "args": [QUIRKY] if gone_command == sys.executable else [],
            "cwd": str(REPO_ROOT),
            "connect_timeout_s": 30,
        },
    ]
    tools = {
        "builtin": ["get_current_time", "calculator"],
        "allowed_side_effects": ["read-only", "write", "network"],
        "mcp_servers": servers,
    }
    (paths["root"] / "config" / "tools.yaml").write_text(yaml.safe_dump(tools))


@pytest.fixture(scope="module")
def server(stub_llm: StubLLMServer, setup: dict[str, Path]) -> Iterator[CozyServer]:
    started = time.perf_counter()
    cozy = start_cozy_server(stub_llm, config_dir=setup["root"] / "config")
    cozy.startup_s = time.perf_counter() - started  # type: ignore[attr-defined]
    try:
        yield cozy
    finally:
        cozy.stop()


@pytest.fixture
def chat(server: CozyServer) -> Iterator[openai.OpenAI]:
    server.upstream.clear()
    with openai.OpenAI(base_url=server.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30) as c:
        yield c


@pytest.fixture
def admin(server: CozyServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.root_url, timeout=30, headers={"authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


def ask(client: openai.OpenAI, text: str, **cozy: Any) -> Any:
    return client.chat.completions.create(
        model=STUB_MODEL, messages=user(text), extra_body={"cozy": {"personality_id": "mcp-tester", **cozy}}
    )


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def test_a_dead_server_does_not_stop_start_up_and_is_reported(server: CozyServer, admin: httpx.Client) -> None:
    checks = admin.get("/ready").json()["checks"]
    assert checks["tools:mcp:notes"]["ok"] is True and checks["tools:mcp:quirky"]["ok"] is True
    gone = checks["tools:mcp:gone"]
    assert gone["ok"] is False and gone["state"] == "down" and "No such file" in gone["detail"]
    body = admin.get("/v1/tools").json()
    names = {t["name"]: t for t in body["data"]}
    assert {"notes_lookup_fact", "notes_add_note", "notes_wipe_notes", "q_slow", "q_echo"} <= set(names)
    assert not [n for n in names if n.startswith("gone_")]
    assert names["notes_wipe_notes"]["side_effect"] == "dangerous" and names["notes_wipe_notes"]["offered"] is False
    assert names["notes_lookup_fact"]["source"] == "mcp:notes" and names["notes_lookup_fact"]["offered"] is True
    assert body["servers"]["gone"]["ok"] is False and body["servers"]["notes"]["tools"] == 4


def test_mcp_tool_called_through_the_tool_loop(chat: openai.OpenAI, server: CozyServer) -> None:
    reply = ask(chat, 'CALL notes_lookup_fact {"topic": "CozyEngine"}')
    assert reply.choices[0].message.content == (
        "Tool notes_lookup_fact returned: CozyEngine is a realtime, voice-first conversation server "
        "with an OpenAI-compatible API."
    )
    assert reply.choices[0].finish_reason == "stop" and reply.model_extra["cozy"]["tool_iterations"] == 1
    first, second = server.upstream.requests()
    assert tool_names(first) == ["calculator", "notes_add_note", "notes_lookup_fact", "q_slow"]
    assert second["messages"][-1]["role"] == "tool"


def test_write_tool_and_stream(chat: openai.OpenAI, setup: dict[str, Path]) -> None:
    stream = chat.chat.completions.create(
        model=STUB_MODEL,
        messages=user('CALL notes_add_note {"text": "from e2e"}'),
        stream=True,
        extra_body={"cozy": {"personality_id": "mcp-tester"}},
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Tool notes_add_note returned: note 2 saved"
    assert read(setup["notes"]) == ["first note", "from e2e"]


def test_dangerous_tool_never_offered_nor_executed(
    chat: openai.OpenAI, server: CozyServer, setup: dict[str, Path]
) -> None:
    before = read(setup["notes"])
    # Not offered, so the stub (a well-behaved model) cannot call it ...
    reply = ask(chat, "CALL notes_wipe_notes {}")
    assert "notes_wipe_notes" not in tool_names(server.upstream.requests()[0])
    assert reply.choices[0].finish_reason == "stop"
    # ... and a model that asks anyway (the client declared a tool of that name) gets it routed
    # back to the client as a client tool call: the server never runs it.
    wipe = {"type": "function", "function": {"name": "notes_wipe_notes", "parameters": {"type": "object"}}}
    reply = chat.chat.completions.create(
        model=STUB_MODEL,
        messages=user("CALL notes_wipe_notes {}"),
        tools=[wipe],  # type: ignore[list-item]
        extra_body={"cozy": {"personality_id": "mcp-tester"}},
    )
    assert reply.choices[0].finish_reason == "tool_calls"
    assert reply.choices[0].message.tool_calls[0].function.name == "notes_wipe_notes"  # type: ignore[index]
    assert read(setup["notes"]) == before


def test_tool_outside_the_request_allowlist(chat: openai.OpenAI, server: CozyServer) -> None:
    reply = ask(chat, 'CALL notes_lookup_fact {"topic": "mcp"}', allowed_tools=["calculator"])
    assert tool_names(server.upstream.requests()[0]) == ["calculator"]
    assert reply.choices[0].message.content.startswith("Echo:")  # type: ignore[union-attr]
    assert reply.model_extra["cozy"]["tool_iterations"] == 0


def test_invalid_arguments_and_timeout_reach_the_model(chat: openai.OpenAI) -> None:
    reply = ask(chat, 'CALL notes_lookup_fact {"subject": "mcp"}')
    content = reply.choices[0].message.content or ""
    assert content.startswith("Tool notes_lookup_fact returned: ")
    assert json.loads(content.split("returned: ", 1)[1]) == {
        "error": "invalid arguments: 'topic' is a required property"
    }
    start = time.perf_counter()
    reply = ask(chat, 'CALL q_slow {"seconds": 5}')
    assert time.perf_counter() - start < 4
    assert reply.choices[0].message.content == 'Tool q_slow returned: {"error":"tool q_slow timed out after 0.5 s"}'


def test_tool_calls_are_audited(chat: openai.OpenAI, admin: httpx.Client) -> None:
    ask(chat, 'CALL notes_lookup_fact {"topic": "water"}')
    events: list[dict[str, Any]] = []
    for _ in range(50):  # audit events reach the database through the background queue
        events = admin.get("/v1/admin/audit", params={"type": "tool.call", "limit": 100}).json()["data"]
        if any(e["resource"] == "tool:notes_lookup_fact" and e["outcome"] == "ok" for e in events):
            break
        time.sleep(0.1)
    event = next(e for e in events if e["resource"] == "tool:notes_lookup_fact" and e["outcome"] == "ok")
    assert event["user_name"] and event["request_id"]
    detail = event["detail"]
    assert len(detail["args_sha256"]) == 64 and detail["source"] == "mcp:notes" and detail["channel"] == "text"
    assert detail["latency_ms"] >= 0 and detail["call_id"].startswith("call_")
    assert "water" not in json.dumps(events)
    assert any(e["outcome"] == "error" and e["detail"].get("error") == "invalid_arguments" for e in events)


def test_refresh_picks_up_changes(admin: httpx.Client, chat: openai.OpenAI, setup: dict[str, Path]) -> None:
    """Last in the module: it changes the servers' configuration."""
    setup["listed"].write_text("slow echo extra\n")  # the live quirky server now lists one more tool
    write_tools(setup, gone_command=sys.executable)  # and the dead one is fixed
    response = admin.post("/v1/tools/refresh")
    assert response.status_code == 200, response.text
    names = [t["name"] for t in response.json()["data"]]
    assert "q_extra" in names and "gone_echo" in names, (names, admin.get("/v1/tools").json()["servers"])
    assert admin.get("/ready").json()["checks"]["tools:mcp:gone"]["ok"] is True
    assert ask(chat, "CALL q_extra {}").choices[0].message.content == "Tool q_extra returned: extra!"
    # A bad file changes nothing.
    (setup["root"] / "config" / "tools.yaml").write_text("mcp_servers: [{name: broken}]\n")
    bad = admin.post("/v1/tools/refresh")
    assert bad.status_code == 400 and "needs `command`" in bad.text
    assert "q_extra" in [t["name"] for t in admin.get("/v1/tools").json()["data"]]

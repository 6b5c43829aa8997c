"""Helpers for the tools tests: MCP server configs for the shipped example and the test server
(tests/support/mcp_test_server.py), both run over real stdio by the SDK's client."""

from __future__ import annotations

import sys
from typing import Any

from cozy_actors.config.tools import ToolsConfig
from tests.support.procs import REPO_ROOT

NOTES_MODULE = "cozy_actors.engines.tools.examples.notes_server"
TEST_SERVER = str(REPO_ROOT / "tests" / "support" / "mcp_test_server.py")


def notes_server(name: str = "notes", **overrides: Any) -> dict[str, Any]:
    """The shipped example over stdio; its own annotations decide the levels above read-only."""
    return {
        "name": name,
        "command": sys.executable,
        "args": ["-m", NOTES_MODULE],
        "side_effect": "read-only",
        "cwd": str(REPO_ROOT),
        **overrides,
    }


def quirky_server(name: str = "t", env: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "command": sys.executable,
        "args": [TEST_SERVER],
        "env": env or {},
        "cwd": str(REPO_ROOT),
        **overrides,
    }


def tools_config(*servers: dict[str, Any], **top: Any) -> ToolsConfig:
    return ToolsConfig.model_validate({"mcp_servers": list(servers), **top})


class AuditSpy:
    """Stands in for AuditLog: keeps every record() call."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(self, type: str, **fields: Any) -> None:
        self.events.append({"type": type, **fields})

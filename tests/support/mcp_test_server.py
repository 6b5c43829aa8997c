"""An MCP server with the awkward behaviours the tools tests need (run over real stdio):

- `slow(seconds)`: answers late (per-call timeouts);
- `crash()`: the process exits mid-call (a server that dies);
- `echo(text)`: a tool with a strict schema;
- when `MCP_TEST_TOOLS_FILE` names a file, only the tools listed in it (one per line) are listed,
  re-read at every `tools/list` (refresh picks up a changed tool list);
- `MCP_TEST_EXIT_AT_START=1`: exits before answering anything (a server that never comes up).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations


class FilteredServer(MCPServer):
    async def list_tools(self) -> list[Any]:
        tools = await super().list_tools()
        path = os.environ.get("MCP_TEST_TOOLS_FILE")
        if not path:
            return tools
        wanted = _listed(path)
        return [t for t in tools if t.name in wanted]


def _listed(path: str) -> set[str]:
    return set(Path(path).read_text().split())


server = FilteredServer("cozy-test")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def slow(seconds: float) -> str:
    """Sleep, then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def crash() -> str:
    """Exit the server process mid-call."""
    os._exit(3)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def echo(text: str, times: int = 1) -> str:
    """Repeat the text."""
    return " ".join([text] * times)


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def extra() -> str:
    """Only listed when the tools file names it."""
    return "extra!"


if __name__ == "__main__":
    if os.environ.get("MCP_TEST_EXIT_AT_START") == "1":
        sys.exit(2)
    server.run("stdio")

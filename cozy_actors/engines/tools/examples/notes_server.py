"""A small notes MCP server built on the SDK's MCPServer (FastMCP in mcp 1.x).

It exists to show, and to test over real stdio or streamable HTTP, how CozyEngine maps MCP tools
onto its side-effect policy: each tool carries the MCP annotations that CozyEngine reads as hints
(`lookup_fact` and `list_notes` read-only, `add_note` a write, `wipe_notes` destructive, hence
`dangerous` and never offered unless the policy lists it).

    python -m cozy_actors.engines.tools.examples.notes_server                  # stdio
    python -m cozy_actors.engines.tools.examples.notes_server --transport http --port 8765

Notes live in memory, or in the JSON file named by `--notes-file` / `COZY_NOTES_FILE` so they
survive a restart of the server.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

FACTS = {
    "cozyengine": "CozyEngine is a realtime, voice-first conversation server with an OpenAI-compatible API.",
    "mcp": "The Model Context Protocol lets a model use tools served by separate processes.",
    "eiffel tower": "The Eiffel Tower is 330 metres tall and was finished in 1889.",
    "water": "Water boils at 100 degrees Celsius at sea level.",
}
MAX_NOTE = 2000
MAX_NOTES = 1000


class NoteBook:
    """The server's state; a file when one is named, so tests can look at what was written."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.notes: list[str] = []
        if self.path is not None and self.path.exists():
            self.notes = list(json.loads(self.path.read_text(encoding="utf-8")))

    def save(self) -> None:
        if self.path is not None:
            self.path.write_text(json.dumps(self.notes), encoding="utf-8")


def build(notes_file: str | None = None) -> MCPServer:
    """The server with its four tools; `notes_file` keeps the notes on disk."""
    book = NoteBook(notes_file)
    server = MCPServer("cozy-notes", instructions="Facts to look up and a notebook to write in.")

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    def lookup_fact(topic: str) -> str:
        """Look up a short fact about a topic (cozyengine, mcp, eiffel tower, water)."""
        fact = FACTS.get(topic.strip().lower())
        if fact is None:
            raise ToolError(f"no fact about {topic!r}; known topics: {', '.join(sorted(FACTS))}")
        return fact

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    def list_notes() -> str:
        """Every note written so far, one per line."""
        return "\n".join(f"{i + 1}. {n}" for i, n in enumerate(book.notes)) or "(no notes)"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False))
    def add_note(text: str) -> str:
        """Write a note to remember for later."""
        text = text.strip()
        if not text or len(text) > MAX_NOTE:
            raise ToolError(f"a note is 1 to {MAX_NOTE} characters")
        if len(book.notes) >= MAX_NOTES:
            raise ToolError("the notebook is full")
        book.notes.append(text)
        book.save()
        return f"note {len(book.notes)} saved"

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False))
    def wipe_notes() -> str:
        """Delete every note. Irreversible."""
        count = len(book.notes)
        book.notes.clear()
        book.save()
        return f"{count} note(s) deleted"

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--notes-file", default=os.environ.get("COZY_NOTES_FILE") or None)
    args = parser.parse_args(argv)
    server = build(args.notes_file)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.port, streamable_http_path="/mcp")


if __name__ == "__main__":
    main()

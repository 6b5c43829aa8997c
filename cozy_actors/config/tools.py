"""Configuration of the tools a model may call (tools.yaml): the built-in ones, the MCP servers
whose tools join the catalog, and which side effects are allowed. Kept apart from models.py,
which composes it into the config files; the tools engine validates and connects the servers.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from cozy_core.engines import blank_to_none as _empty_to_none


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


SideEffect = Literal["read-only", "write", "network", "dangerous"]


class MCPServerConfig(_Strict):
    """One MCP server whose tools join the catalog (README "Tools")."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    transport: Literal["stdio", "http"] = "stdio"
    command: str | None = None  # stdio: the executable, e.g. python
    args: list[str] = []
    env: dict[str, str] = {}  # stdio: added to a minimal inherited environment (PATH, HOME, ...)
    cwd: str | None = None
    url: str | None = None  # http: the streamable HTTP endpoint, e.g. http://127.0.0.1:8765/mcp
    headers: dict[str, SecretStr] = {}  # http: e.g. Authorization: "Bearer ${NOTES_TOKEN}"
    enabled: bool = True
    timeout_s: float | None = Field(None, gt=0)  # per call; empty: tools.call_timeout_s
    connect_timeout_s: float = Field(10.0, gt=0)  # start + initialize + tools/list
    side_effect: SideEffect = "write"  # the floor for its tools; annotations may only raise it
    tool_side_effects: dict[str, SideEffect] = {}  # per tool (server-side name): exact, wins over hints
    prefix: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{0,32}$")  # empty: "<name>_"

    _none = field_validator("cwd", "url", "command", "timeout_s", mode="before")(_empty_to_none)

    @field_validator("enabled", mode="before")
    @classmethod
    def _blank_is_false(cls, value: Any) -> Any:
        return False if isinstance(value, str) and value.strip() == "" else value

    @model_validator(mode="after")
    def _transport(self) -> MCPServerConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError("a stdio server needs `command`")
        if self.transport == "stdio" and (self.url or self.headers):
            raise ValueError("`url`/`headers` are for transport http")
        if self.transport == "http":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError("an http server needs `url` (http:// or https://)")
            if self.command or self.args or self.env or self.cwd:
                raise ValueError("`command`/`args`/`env`/`cwd` are for transport stdio")
        return self

    @property
    def tool_prefix(self) -> str:
        return f"{self.name}_" if self.prefix is None else self.prefix


class ToolsConfig(_Strict):
    builtin: list[str] = ["get_current_time", "calculator"]
    allowed_side_effects: list[SideEffect] = ["read-only", "write", "network"]
    call_timeout_s: float = Field(10.0, gt=0)  # default per-call timeout of MCP tools
    mcp_servers: list[MCPServerConfig] = []

    @model_validator(mode="after")
    def _unique_servers(self) -> ToolsConfig:
        names = [s.name for s in self.mcp_servers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate mcp_servers name(s): {', '.join(dupes)}")
        return self

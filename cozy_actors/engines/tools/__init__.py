"""Server-side tools: typed definitions, side-effect levels, a catalog with policy."""

from .base import Tool, ToolCatalog, ToolError, ToolResult

__all__ = ["Tool", "ToolCatalog", "ToolError", "ToolResult"]

"""Example MCP servers shipped with CozyEngine (used by the tests over real stdio)."""

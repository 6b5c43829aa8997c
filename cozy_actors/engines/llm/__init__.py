"""LLM engines: one streaming chat interface, OpenAI-compatible and local llama.cpp providers."""

from .base import LLMEngine, LLMFinish, LLMRequest, LLMTextDelta, LLMToolCallDelta, LLMUsage

__all__ = ["LLMEngine", "LLMFinish", "LLMRequest", "LLMTextDelta", "LLMToolCallDelta", "LLMUsage"]

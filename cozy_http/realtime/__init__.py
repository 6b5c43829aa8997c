"""The OpenAI Realtime WebSocket transport: a thin adapter onto the realtime actor."""

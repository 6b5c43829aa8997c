"""Per-session interruption settings from a connection's query string (`cozy_interruption=` and
`cozy_interruption_<setting>=`): GA's session.update has no field for them, so they ride on the
URL like `cozy_session_id`. The service validates them over the personality's settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_FIELDS = ("min_words", "min_speech_ms", "resume_after_ms", "backchannels")


def interruption_query(q: Mapping[str, str], default_mode: str | None = None) -> dict[str, Any] | None:
    """The overrides the query names (None: none, the personality's settings hold).
    `backchannels` is comma-separated (empty: no backchannel words)."""
    out: dict[str, Any] = {}
    mode = q.get("cozy_interruption") or default_mode
    if mode is not None:
        out["mode"] = mode
    for name in _FIELDS:
        raw = q.get(f"cozy_interruption_{name}")
        if raw is None:
            continue
        out[name] = [w.strip() for w in raw.split(",") if w.strip()] if name == "backchannels" else raw
    return out or None

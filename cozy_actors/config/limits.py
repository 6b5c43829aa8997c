"""Bounds on what one caller may make the server hold or do: per-user quotas, per-connection
limits of the WebSocket endpoints, and the token buckets of the edge (requests, passwords,
failed authentications). Kept apart from models.py, which composes them into the config files.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cozy_core.engines import blank_to_none as _empty_to_none


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuotaConfig(_Strict):
    """Per-user fair share in this process (README "Quotas"); empty: no per-user limit of that kind."""

    enabled: bool = True
    exempt_admins: bool = True  # admins are limited only by the process-wide limits
    conversations_per_user: int | None = Field(20, ge=1)  # live conversation actors (idle ones are evicted first)
    realtime_sessions_per_user: int | None = Field(4, ge=1)  # WS /v1/realtime and WebRTC calls together
    stt_streams_per_user: int | None = Field(4, ge=1)  # WS /v1/audio/stt/stream
    llm_queue_per_user: int | None = Field(2, ge=1)  # chat requests waiting for or on a single-lane local model
    retry_after_s: float = Field(5.0, gt=0)  # the Retry-After of a refusal (quota or process full)

    _none = field_validator(
        "conversations_per_user",
        "realtime_sessions_per_user",
        "stt_streams_per_user",
        "llm_queue_per_user",
        mode="before",
    )(_empty_to_none)


class RealtimeLimitsConfig(_Strict):
    """Per-connection bounds of `WS /v1/realtime` (README "Limits"): what one client may make the
    server hold, checked before the work (a frame before parsing, an item before it is stored)."""

    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)  # one WebSocket message; larger: close 1009
    max_queued_bytes: int = Field(16 * 1024 * 1024, ge=65536)  # client events waiting in the session's mailbox
    max_outbox_bytes: int = Field(32 * 1024 * 1024, ge=65536)  # server events the client has not read: close 1008
    max_text_chars: int = Field(32768, ge=1)  # one item's text, transcript, arguments or output
    max_instructions_chars: int = Field(32768, ge=1)  # session.update / response.create instructions
    max_content_parts: int = Field(16, ge=1)  # content parts of one conversation item
    max_tools: int = Field(128, ge=0)  # client tools of a session.update / response.create
    max_audio_append_bytes: int = Field(3 * 1024 * 1024, ge=1024)  # decoded audio of one append or input_audio part
    max_items: int = Field(500, ge=2)  # conversation items held in memory; the oldest leave first (all are stored)


class SttStreamLimitsConfig(_Strict):
    """`WS /v1/audio/stt/stream`: admission (app.sessions' loop lag and pool backlog), caps, lifetime."""

    max_message_bytes: int = Field(1024 * 1024, ge=1024)  # one WebSocket message; larger: close 1009
    max_duration_s: float = Field(3600.0, gt=0)  # then an `error` (session_expired) and close
    max_sessions: int | None = Field(200, ge=1)  # streams open at once in this process; empty: no cap

    _none = field_validator("max_sessions", mode="before")(_empty_to_none)


class RateLimitConfig(_Strict):
    """Token bucket per API key (per user for JWTs): `requests_per_minute` refill, `burst` capacity."""

    enabled: bool = True
    requests_per_minute: float = Field(600.0, gt=0)
    burst: int = Field(100, ge=1)


class LoginLimitConfig(_Strict):
    """Password attempts (`/v1/auth/token`, the `/ui` sign-in): token buckets per user name and
    per client address, so guessing is slow and argon2 cannot be used to burn the server's CPU."""

    enabled: bool = True
    per_user_per_minute: float = Field(10.0, gt=0)
    per_user_burst: int = Field(5, ge=1)
    per_client_per_minute: float = Field(30.0, gt=0)
    per_client_burst: int = Field(10, ge=1)


class AuthFailureLimitConfig(_Strict):
    """Failed authentications (missing, unknown or bad tokens) per client address: a token bucket
    checked before any cache or database lookup, so a flood of bogus tokens costs neither database
    work nor an audit event each. A token already verified and cached is never refused here."""

    enabled: bool = True
    per_client_per_minute: float = Field(30.0, gt=0)
    per_client_burst: int = Field(20, ge=1)

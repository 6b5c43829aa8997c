"""Typed configuration, one model per `config/*.yaml` file.

Every model forbids unknown keys: a typo in a config file must stop the server, not be ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator, model_validator

from .limits import (
    AuthFailureLimitConfig,
    LoginLimitConfig,
    QuotaConfig,
    RateLimitConfig,
    RealtimeLimitsConfig,
    SttStreamLimitsConfig,
)
from .speech import AudioConfig, LanguageConfig, STTConfig, TTSConfig, VADConfig
from .tools import ToolsConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _empty_to_none(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip() == "" else value


class SessionConfig(_Strict):
    """Limits of one conversation actor (DESIGN: bounded everything per session)."""

    max_duration_s: float = Field(3600.0, gt=0)
    idle_timeout_s: float = Field(300.0, gt=0)
    mailbox_size: int = Field(256, ge=1)
    overflow: Literal["reject", "drop_oldest"] = "reject"
    max_restarts: int = Field(3, ge=0)
    restart_window_s: float = Field(60.0, gt=0)
    backoff_initial_s: float = Field(0.05, ge=0)
    backoff_max_s: float = Field(2.0, ge=0)
    max_sessions: int | None = Field(1000, ge=1)
    max_loop_lag_ms: float | None = Field(500.0, gt=0)
    max_pool_backlog: int | None = Field(64, ge=1)  # admission control for voice: inference jobs queued
    max_history_messages: int = Field(200, ge=2)
    ask_timeout_s: float = Field(5.0, gt=0)

    _none = field_validator("max_sessions", "max_loop_lag_ms", "max_pool_backlog", mode="before")(_empty_to_none)


class TurnConfig(_Strict):
    max_tool_iterations: int = Field(10, ge=0)
    llm_timeout_s: float = Field(120.0, gt=0)
    tool_timeout_s: float = Field(10.0, gt=0)


class AppConfig(_Strict):
    name: str = "CozyEngine"
    environment: str = "development"
    data_dir: str | None = None
    personalities_dir: str = "personalities"
    default_personality: str = "assistant"
    inference_workers: int = Field(2, ge=1)
    sessions: SessionConfig = SessionConfig()
    turn: TurnConfig = TurnConfig()
    quotas: QuotaConfig = QuotaConfig()

    _none = field_validator("data_dir", mode="before")(_empty_to_none)


class WebRTCConfig(_Strict):
    """FastRTC/WebRTC voice calls (`POST {path}/webrtc/offer`) and the Gradio call page at `ui_path`."""

    enabled: bool = True
    path: str = "/v1/rtc"  # behind the bearer middleware like the rest of /v1
    ui_path: str | None = "/ui"  # empty: no call page; the page does its own login (see README)
    concurrency_limit: int = Field(50, ge=1)  # peer connections open at once (offer endpoint and page together)
    time_limit_s: float | None = Field(None, gt=0)  # hard cap per call; the session's max_duration_s applies anyway
    connect_timeout_s: float = Field(30.0, gt=0)  # a call whose peer never connects is released after this
    silence_duration_ms: int = Field(500, ge=100, le=5000)  # server VAD: silence that ends the caller's turn
    preload: bool = False  # load fastrtc/gradio at start-up (seconds of CPU) instead of on the first call
    ice_servers: list[dict[str, Any]] = []  # STUN/TURN for both peers; none by default (no public servers)

    _none = field_validator("ui_path", "time_limit_s", mode="before")(_empty_to_none)

    @field_validator("path", "ui_path")
    @classmethod
    def _mount_path(cls, value: str | None) -> str | None:
        if value is not None and (not value.startswith("/") or value.endswith("/") or len(value) < 2):
            raise ValueError("must start with '/' and not end with '/' (e.g. /v1/rtc)")
        return value

    @field_validator("ice_servers")
    @classmethod
    def _ice(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for server in value:
            if not server.get("urls"):
                raise ValueError("every ICE server needs 'urls'")
        return value


class ApiConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int | Literal["auto"] = 1  # worker processes on the one port (`cozy serve --workers`); auto: CPUs
    internal_host: str = "127.0.0.1"  # each worker's own listener (forwarded requests); a node's IP across nodes
    internal_url: str | None = None  # where other workers reach this one (forwarding); empty: http://host:port
    cors_origins: list[str] = []
    max_body_bytes: int = Field(26_214_400, ge=1024)  # every HTTP body, counted while it streams in: 413
    max_body_bytes_by_route: dict[str, int] = {}  # exact path -> cap; the audio upload routes default to
    # engines.audio.max_upload_bytes + 256 KiB of form fields
    docs_enabled: bool = True
    webrtc: WebRTCConfig = WebRTCConfig()
    realtime: RealtimeLimitsConfig = RealtimeLimitsConfig()
    stt_stream: SttStreamLimitsConfig = SttStreamLimitsConfig()

    _none = field_validator("internal_url", mode="before")(_empty_to_none)

    @field_validator("max_body_bytes_by_route")
    @classmethod
    def _routes(cls, value: dict[str, int]) -> dict[str, int]:
        for path, cap in value.items():
            if not path.startswith("/"):
                raise ValueError(f"{path!r}: a route is an exact path starting with '/'")
            if not isinstance(cap, int) or cap < 1:
                raise ValueError(f"{path!r}: the cap must be a positive number of bytes")
        return value

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("at least 1 (or auto: one per CPU)")
        return value

    @model_validator(mode="after")
    def _webrtc_paths(self) -> ApiConfig:
        w = self.webrtc
        if w.ui_path is not None and (w.path == w.ui_path or w.path.startswith(w.ui_path + "/")):
            raise ValueError("webrtc.path must not be under webrtc.ui_path (the page is public, the offer is not)")
        return self


class LLMModelConfig(_Strict):
    """One model the server can serve; `options` are validated by the provider's own schema."""

    id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    enabled: bool = True
    owned_by: str = "cozyengine"
    options: dict[str, Any] = {}

    @field_validator("enabled", mode="before")
    @classmethod
    def _blank_is_false(cls, value: Any) -> Any:
        return False if isinstance(value, str) and value.strip() == "" else value


class LLMConfig(_Strict):
    default_model: str | None = None
    models: list[LLMModelConfig] = Field(min_length=1)

    _none = field_validator("default_model", mode="before")(_empty_to_none)

    @model_validator(mode="after")
    def _check_models(self) -> LLMConfig:
        ids = [m.id for m in self.models]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate model id(s): {', '.join(dupes)}")
        enabled = [m.id for m in self.models if m.enabled]
        if not enabled:
            raise ValueError("no enabled model")
        if self.default_model is not None and self.default_model not in enabled:
            raise ValueError(f"default_model {self.default_model!r} is not an enabled model ({', '.join(enabled)})")
        return self

    @property
    def enabled_models(self) -> list[LLMModelConfig]:
        return [m for m in self.models if m.enabled]

    @property
    def default(self) -> LLMModelConfig:
        """The default model: `default_model`, else the first enabled one in file order."""
        wanted = self.default_model or self.enabled_models[0].id
        return next(m for m in self.models if m.id == wanted)


class EnginesConfig(_Strict):
    llm: LLMConfig
    stt: STTConfig = STTConfig()
    tts: TTSConfig = TTSConfig()
    vad: VADConfig = VADConfig()
    audio: AudioConfig = AudioConfig()
    # Per-language speech routes, e.g. zh (the optional zh pack); keys are ISO 639-1/3 codes.
    languages: dict[Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")], LanguageConfig] = {}
    plugins_enabled: bool = True


class ContextEngineConfig(_Strict):
    """One personalization engine: a registry provider (postgres, mem0, memobase, cognee, plugins)."""

    enabled: bool = True
    provider: str = "postgres"
    options: dict[str, Any] = {}


class ContextConfig(_Strict):
    """Personalization fetch budget (used by the context service)."""

    enabled: bool = True
    knowledge_timeout_s: float = Field(0.5, gt=0)
    profile_timeout_s: float = Field(0.3, gt=0)
    memory_timeout_s: float = Field(0.4, gt=0)
    max_prompt_tokens: int = Field(1536, ge=128)
    max_items: int = Field(5, ge=1, le=50)  # per engine and turn
    datasets: list[str] = ["default"]  # knowledge datasets searched for every turn
    update_mode: Literal["sync", "async"] = "async"  # async: through the background queue
    update_batch_size: int = Field(50, ge=1)  # turns per engine update call (retries: storage.queue)
    knowledge: ContextEngineConfig = ContextEngineConfig()
    profile: ContextEngineConfig = ContextEngineConfig()
    memory: ContextEngineConfig = ContextEngineConfig()


class QueueConfig(_Strict):
    """Background write queue (audit now; memory/profile updates later)."""

    max_attempts: int = Field(5, ge=1)
    batch_size: int = Field(100, ge=1)
    retry_after_s: float = Field(2.0, gt=0)  # a failed entry is retried once it has been idle this long
    block_s: float = Field(1.0, gt=0)  # how long a Redis consumer waits for new entries per read


class DurabilityConfig(_Strict):
    """Durable turns (issue 10, item 6): per-session ordered writes, retries, crash checkpoints."""

    checkpoint_interval_s: float = Field(1.0, gt=0)  # a streaming reply's text is checkpointed this often
    orphan_turn_after_s: float = Field(15.0, gt=0)  # a checkpoint not touched this long: its node died
    write_retry_initial_s: float = Field(0.2, gt=0)  # a failed voice-turn write is retried after this ...
    write_retry_max_s: float = Field(5.0, gt=0)  # ... doubling up to this
    flush_on_stop_s: float = Field(3.0, gt=0)  # a stopping session waits this long for its pending writes
    max_pending_writes: int = Field(1000, ge=1)  # per session; beyond it the oldest are dropped (logged)


class PlacementConfig(_Strict):
    """Conversation leases (DESIGN, Placement): a worker silent for ttl_s loses its conversations."""

    ttl_s: float = Field(5.0, gt=0)
    heartbeat_s: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _beat(self) -> PlacementConfig:
        if self.heartbeat_s >= self.ttl_s:
            raise ValueError("heartbeat_s must be below ttl_s")
        return self


class StorageConfig(_Strict):
    database_url: SecretStr | None = None  # empty: embedded PostgreSQL under app.data_dir/postgres
    redis_url: SecretStr | None = None  # empty: in-process cache, rate limiter and queue
    pool_min_size: int = Field(1, ge=0)
    pool_max_size: int = Field(10, ge=1)
    command_timeout_s: float = Field(10.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)
    redis_prefix: str = Field("cozy", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    redis_timeout_s: float = Field(0.5, gt=0)  # per command: a hung Redis must not stall a chat
    redis_retry_s: float = Field(5.0, gt=0)  # after a failure, in-process fallbacks for this long
    cache_ttl_s: float = Field(300.0, gt=0)
    queue: QueueConfig = QueueConfig()
    durability: DurabilityConfig = DurabilityConfig()
    placement: PlacementConfig = PlacementConfig()

    _none = field_validator("database_url", "redis_url", mode="before")(_empty_to_none)

    @model_validator(mode="after")
    def _pool(self) -> StorageConfig:
        if self.pool_min_size > self.pool_max_size:
            raise ValueError("pool_min_size must not exceed pool_max_size")
        return self


class ObservabilityConfig(_Strict):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    log_message_text: bool = False
    access_log: bool = True
    metrics_enabled: bool = True

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


def _split_list(value: Any) -> Any:
    """`a, b` (e.g. from one environment variable) -> ["a", "b"]; an empty string -> []."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SecurityConfig(_Strict):
    auth_enabled: bool = True
    jwt_secret_key: SecretStr | None = None
    jwt_expiry_s: int = Field(3600, ge=60)
    bootstrap_admin_key: SecretStr | None = None
    public_paths: list[str] = ["/health", "/ready", "/metrics", "/docs", "/openapi.json"]
    auth_cache_ttl_s: float = Field(30.0, ge=0)  # how long a verified key/JWT is trusted without a lookup
    rate_limit: RateLimitConfig = RateLimitConfig()
    login_limit: LoginLimitConfig = LoginLimitConfig()
    auth_failure_limit: AuthFailureLimitConfig = AuthFailureLimitConfig()
    # Reverse proxies whose X-Forwarded-For is believed (addresses or CIDRs); empty: none, the
    # client address is the socket peer. Used by every per-address limit (tokens and sign-ins).
    trusted_proxies: list[str] = []

    _none = field_validator("jwt_secret_key", "bootstrap_admin_key", mode="before")(_empty_to_none)
    _split = field_validator("trusted_proxies", mode="before")(_split_list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or CIDR") from None
        return out

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _strong_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


# file stem -> model; order is the order `cozy config check` prints them.
SECTIONS: dict[str, type[BaseModel]] = {
    "app": AppConfig,
    "api": ApiConfig,
    "engines": EnginesConfig,
    "context": ContextConfig,
    "tools": ToolsConfig,
    "storage": StorageConfig,
    "observability": ObservabilityConfig,
    "security": SecurityConfig,
}
REQUIRED_SECTIONS = ("engines",)

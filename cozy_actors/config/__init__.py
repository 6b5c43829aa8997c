"""Configuration: YAML files + environment, validated with pydantic at start-up."""

from .loader import ConfigError, Settings, default_config_dir, load_settings, redacted, render
from .models import (
    ApiConfig,
    AppConfig,
    ContextConfig,
    EnginesConfig,
    LLMConfig,
    LLMModelConfig,
    ObservabilityConfig,
    QuotaConfig,
    SecurityConfig,
    SessionConfig,
    StorageConfig,
    TurnConfig,
)
from .tools import ToolsConfig

__all__ = [
    "ApiConfig",
    "AppConfig",
    "ConfigError",
    "ContextConfig",
    "EnginesConfig",
    "LLMConfig",
    "LLMModelConfig",
    "ObservabilityConfig",
    "QuotaConfig",
    "SecurityConfig",
    "SessionConfig",
    "Settings",
    "StorageConfig",
    "ToolsConfig",
    "TurnConfig",
    "default_config_dir",
    "load_settings",
    "redacted",
    "render",
]

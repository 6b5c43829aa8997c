"""JSON logs with the request id on every line, for our code, the runtime and uvicorn alike.

stdlib loggers are routed through structlog's ProcessorFormatter, so `logging.getLogger(...)`
calls anywhere in the process come out in the same JSON shape with the bound context
(request_id, session_id, ...). Message text is never logged unless switched on in config.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

_REDACT_KEYS = ("authorization", "api_key", "password", "secret", "token")
_EXTRA_KEYS = (
    "session_id",
    "personality_id",
    "user_id",
    "route",
    "status",
    "latency_ms",
    "provider",
    "default_model",
    "actor_id",
    "reason",
    "method",
)


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key in list(event):
        if any(k in key.lower() for k in _REDACT_KEYS) and key != "event":
            event[key] = "***"
    return event


def _extra_from_record(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    record = event.get("_record")
    if record is not None:
        for key in _EXTRA_KEYS:
            if key in record.__dict__:
                event.setdefault(key, record.__dict__[key])
    return event


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Configure structlog and the stdlib root logger once per process."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps) if fmt == "json" else structlog.dev.ConsoleRenderer()
    )
    # Our own hot-path logs (access lines) use structlog's native logger writing straight to
    # stderr: several times cheaper than a stdlib LogRecord through ProcessorFormatter.
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            _extra_from_record,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our middleware writes the access line
    for noisy in ("httpx", "httpcore", "httpx2", "httpcore2", "openai"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> Any:
    """A fast structlog logger bound with `logger=name` (same JSON shape as stdlib records)."""
    return structlog.get_logger().bind(logger=name)

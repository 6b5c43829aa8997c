"""The one uvicorn configuration every `cozy serve` process uses (single process or a worker)."""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from cozy_actors.config import Settings


def uvicorn_config(settings: Settings, app: Any, *, host: str, port: int, **extra: Any) -> uvicorn.Config:
    """uvicorn options for CozyEngine; `extra` overrides (e.g. a worker's placeholder app)."""
    options: dict[str, Any] = dict(
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        # Realtime frames are base64 audio: deflate saves little and cost ~10% of a busy server's CPU.
        ws_per_message_deflate=False,
        # The largest per-endpoint message cap; each endpoint enforces its own (close 1009) below it.
        ws_max_size=max(settings.api.realtime.max_message_bytes, settings.api.stt_stream.max_message_bytes),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
        # The client address is ours to work out (security.trusted_proxies, cozy_http.client_address):
        # uvicorn must not rewrite it from X-Forwarded-For (by default it trusts 127.0.0.1 for that).
        proxy_headers=False,
    )
    options.update(extra)
    return uvicorn.Config(app, **options)


def advertised_url(host: str, port: int) -> str:
    """The URL other workers and nodes reach this listener at (forwarding to a conversation's
    owner): a socket bound everywhere is reached by this host's own address."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostbyname(socket.gethostname())
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

"""`cozy` command line: serve, check the configuration, migrate the database, create users."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cozy_actors.config import ConfigError, Settings, load_settings, render


def _load(config_dir: str | None) -> Settings:
    try:
        return load_settings(Path(config_dir) if config_dir else None)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise SystemExit(2) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cozy_actors.services import StartupError

    from .app import create_app
    from .logs import configure_logging

    settings = _load(args.config)
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    try:
        app = create_app(settings)
    except StartupError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    host = args.host or settings.api.host
    port = settings.api.port if args.port is None else args.port
    config = uvicorn.Config(
        app,
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
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


def cmd_config_check(args: argparse.Namespace) -> int:
    from cozy_actors.services import CozyServices, StartupError

    settings = _load(args.config)
    try:
        CozyServices(settings).build()
    except StartupError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    sys.stdout.write(render(settings))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cozy", description="CozyEngine: realtime voice-first conversation server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", default=None, help="bind address (default: api.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default: api.port, 8000; 0 = any free port)")
    serve.add_argument("--config", default=None, help="configuration directory (default: ./config or COZY_CONFIG_DIR)")
    serve.set_defaults(func=cmd_serve)
    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate and print the effective configuration (secrets redacted)")
    check.add_argument("--config", default=None, help="configuration directory")
    check.set_defaults(func=cmd_config_check)
    from .cli_admin import add_parsers

    add_parsers(sub, _load)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())

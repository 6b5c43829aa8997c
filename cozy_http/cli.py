"""`cozy` command line: serve, check the configuration, migrate the database, create users."""

from __future__ import annotations

import argparse
import os
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


def worker_count(value: int | str) -> int:
    """`--workers`/`api.workers`: a positive number, or `auto` (the CPUs this process may use)."""

    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    count = int(value)
    if count < 1:
        raise ValueError("--workers must be at least 1, or auto")
    return count


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cozy_actors.services import CozyServices, StartupError

    from .app import create_app
    from .logs import configure_logging
    from .serving import advertised_url, uvicorn_config

    settings = _load(args.config)
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    try:
        workers = worker_count(settings.api.workers if args.workers is None else args.workers)
    except ValueError as exc:
        print(f"cozy serve: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.api.host
    port = settings.api.port if args.port is None else args.port
    if workers > 1:  # a parent that supervises N worker processes on one socket
        from .workers import serve_workers

        return serve_workers(settings, args.config, host=host, port=port, workers=workers)
    services = CozyServices(settings)
    try:
        app = create_app(settings, services)
    except StartupError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    config = uvicorn_config(settings, app, host=host, port=port)
    sock = config.bind_socket()  # bound here: the port other workers forward to is the one we got
    if not settings.api.internal_url:  # api.yaml reads COZY_INTERNAL_URL
        services.placement.address = advertised_url(host, sock.getsockname()[1])
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
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
    serve.add_argument(
        "--workers",
        default=None,
        help="worker processes on the one port: a number, or auto (one per CPU); default: api.workers, 1",
    )
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

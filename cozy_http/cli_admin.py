"""`cozy db migrate` and `cozy users create`: the same database code as the server, no HTTP.

Both work on the configured database (DATABASE_URL, else the embedded one under COZY_DATA_DIR),
also while a server is running on it. A new user's API key is printed once, alone on stdout (so
`KEY=$(cozy users create ann)` works); everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import Any

from cozy_actors.config import Settings
from cozy_core.errors import CozyError


async def _migrate(settings: Settings) -> int:
    from cozy_actors.infra import Infra
    from cozy_actors.storage.migrate import current_version

    infra = Infra(settings)
    try:
        applied = await infra.open_database()
        async with infra.db.connection("migrate") as conn:
            version = await current_version(conn)
    finally:
        await infra.stop()
    done = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing to apply"
    print(f"database ({infra.database_kind}) at schema version {version}: {done}", file=sys.stderr)
    return 0


async def _create_user(settings: Settings, args: argparse.Namespace, password: str | None) -> int:
    from cozy_actors.infra import Infra

    infra = Infra(settings)
    try:
        await infra.open_database()
        await infra.queue.start()
        await infra.audit.start()
        user, key = await infra.auth.create_user(
            args.name,
            "admin" if args.admin else "user",
            password=password,
            rate_limit_rpm=args.rpm,
            rate_limit_burst=args.burst,
            key_name="cli",
        )
    finally:
        await infra.stop()  # flushes the audit event
    print(f"created {user.role} {user.name!r} ({user.id}); its API key follows, shown only this once", file=sys.stderr)
    print(key)
    return 0


def _run(coro: Any) -> int:
    try:
        return asyncio.run(coro)
    except CozyError as exc:
        print(f"cozy: {exc.code}: {exc.message}", file=sys.stderr)
        return 1


def cmd_db_migrate(args: argparse.Namespace, settings: Settings) -> int:
    return _run(_migrate(settings))


def cmd_users_create(args: argparse.Namespace, settings: Settings) -> int:
    password = None
    if args.password:
        password = os.environ.get("COZY_NEW_USER_PASSWORD") or getpass.getpass("password: ")
        if not os.environ.get("COZY_NEW_USER_PASSWORD") and getpass.getpass("again: ") != password:
            print("cozy: the passwords differ", file=sys.stderr)
            return 2
        if len(password) < 8:
            print("cozy: a password needs at least 8 characters", file=sys.stderr)
            return 2
    return _run(_create_user(settings, args, password))


def add_parsers(sub: Any, load: Any) -> None:
    """Register `db migrate` and `users create` on the `cozy` parser; `load(config_dir)` -> Settings."""

    def bind(fn: Any) -> Any:
        return lambda args: fn(args, load(args.config))

    db = sub.add_parser("db", help="database tools")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    mig = db_sub.add_parser("migrate", help="apply pending schema migrations (the server also does at start-up)")
    mig.add_argument("--config", default=None, help="configuration directory")
    mig.set_defaults(func=bind(cmd_db_migrate))
    users = sub.add_parser("users", help="user accounts")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    create = users_sub.add_parser("create", help="create a user and print a new API key once")
    create.add_argument("name", help="user name (letters, digits, . _ @ -)")
    create.add_argument("--admin", action="store_true", help="role admin (default: user)")
    create.add_argument("--password", action="store_true",
                        help="also set a password for POST /v1/auth/token (prompted, or COZY_NEW_USER_PASSWORD)")
    create.add_argument("--rpm", type=float, default=None, help="rate limit of this key, requests per minute")
    create.add_argument("--burst", type=int, default=None, help="burst size of this key's rate limit")
    create.add_argument("--config", default=None, help="configuration directory")
    create.set_defaults(func=bind(cmd_users_create))

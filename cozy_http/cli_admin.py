"""`cozy db migrate` and `cozy users create|list|keys|revoke-key|disable|enable`: the same
database code and account rules as the server (cozy_actors.auth.accounts), no HTTP.

They work on the configured database (DATABASE_URL, else the embedded one under COZY_DATA_DIR),
also while a server is running on it; a running server sees a revoke or disable made here within
`auth_cache_ttl_s` (its cached verifications expire). A new user's API key is printed once, alone
on stdout (so `KEY=$(cozy users create ann)` works); lists go to stdout as tab-separated lines;
everything else goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cozy_actors.config import Settings
from cozy_core.errors import CozyError

if TYPE_CHECKING:
    from cozy_actors.auth.accounts import Accounts


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


@asynccontextmanager
async def _accounts(settings: Settings) -> AsyncIterator[Accounts]:
    """The database and audit trail without the server (Accounts.auth is the server's AuthService)."""
    from cozy_actors.auth.accounts import Accounts
    from cozy_actors.cache.broadcast import make_broadcaster
    from cozy_actors.infra import Infra

    # Audit events go straight to the database (the in-process queue, drained by stop()): no Redis
    # consumer to outlive the command. Running servers hear about revocations and disabled users at
    # once (a publish over Redis, else a NOTIFY; nothing is subscribed).
    infra = Infra(settings, queue_on_redis=False)
    infra.auth.broadcast = make_broadcaster(infra.redis, infra.db)
    try:
        await infra.open_database()
        await infra.queue.start()
        await infra.audit.start()
        yield Accounts(infra.auth)
    finally:
        await infra.stop()  # flushes the audit events


async def _create_user(settings: Settings, args: argparse.Namespace, password: str | None) -> int:
    async with _accounts(settings) as accounts:
        user, key = await accounts.auth.create_user(
            args.name,
            "admin" if args.admin else "user",
            password=password,
            rate_limit_rpm=args.rpm,
            rate_limit_burst=args.burst,
            key_name="cli",
        )
    print(f"created {user.role} {user.name!r} ({user.id}); its API key follows, shown only this once", file=sys.stderr)
    print(key)
    return 0


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


async def _all_pages(fetch: Callable[[str | None], Awaitable[Any]]) -> list[Any]:
    items, cursor = [], None
    while True:
        page = await fetch(cursor)
        items += page.items
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


async def _list_users(settings: Settings) -> int:
    async with _accounts(settings) as accounts:
        users = await _all_pages(lambda cursor: accounts.list_users(limit=200, cursor=cursor))
    print("id\tname\trole\tstate\tcreated_at")
    for u in users:
        print(f"{u.id}\t{u.name}\t{u.role}\t{'disabled' if u.disabled else 'enabled'}\t{_when(u.created_at)}")
    return 0


async def _list_keys(settings: Settings, name: str) -> int:
    async with _accounts(settings) as accounts:
        user = await accounts.by_name(name)

        async def page(cursor: str | None) -> Any:
            return (await accounts.keys(user.id, limit=200, cursor=cursor))[1]

        keys = await _all_pages(page)
    print("id\tprefix\tname\trate_limit_rpm\trate_limit_burst\tcreated_at\tlast_used_at\trevoked_at")
    for k in keys:
        limits = "\t".join("-" if v is None else str(v) for v in (k.rate_limit_rpm, k.rate_limit_burst))
        print(
            f"{k.id}\t{k.prefix}\t{k.name or '-'}\t{limits}\t{_when(k.created_at)}\t{_when(k.last_used_at)}\t"
            f"{_when(k.revoked_at)}"
        )
    return 0


async def _revoke_key(settings: Settings, key_id: str) -> int:
    async with _accounts(settings) as accounts:
        key = await accounts.revoke_key(key_id)
    print(f"revoked key {key.id} ({key.prefix}...); running servers refuse it within auth_cache_ttl_s", file=sys.stderr)
    return 0


async def _set_disabled(settings: Settings, name: str, disabled: bool) -> int:
    async with _accounts(settings) as accounts:
        user = await accounts.update_user((await accounts.by_name(name)).id, disabled=disabled)
    state = "disabled; running servers refuse their keys and JWTs" if disabled else "enabled; running servers accept"
    print(f"{user.name!r} is {state} within auth_cache_ttl_s", file=sys.stderr)
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


def cmd_users_list(args: argparse.Namespace, settings: Settings) -> int:
    return _run(_list_users(settings))


def cmd_users_keys(args: argparse.Namespace, settings: Settings) -> int:
    return _run(_list_keys(settings, args.name))


def cmd_users_revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    return _run(_revoke_key(settings, args.key_id))


def cmd_users_disable(args: argparse.Namespace, settings: Settings) -> int:
    return _run(_set_disabled(settings, args.name, True))


def cmd_users_enable(args: argparse.Namespace, settings: Settings) -> int:
    return _run(_set_disabled(settings, args.name, False))


def add_parsers(sub: Any, load: Any) -> None:
    """Register `db migrate` and the `users` commands on the `cozy` parser; `load(config_dir)` -> Settings."""

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
    create.add_argument(
        "--password",
        action="store_true",
        help="also set a password for POST /v1/auth/token (prompted, or COZY_NEW_USER_PASSWORD)",
    )
    create.add_argument("--rpm", type=float, default=None, help="rate limit of this key, requests per minute")
    create.add_argument("--burst", type=int, default=None, help="burst size of this key's rate limit")
    create.add_argument("--config", default=None, help="configuration directory")
    create.set_defaults(func=bind(cmd_users_create))
    simple = [
        ("list", "list users (tab-separated: id, name, role, state, created_at)", None, cmd_users_list),
        ("keys", "list a user's API keys, revoked ones included", ("name", "user name"), cmd_users_keys),
        ("revoke-key", "revoke an API key", ("key_id", "the key's id (from `cozy users keys`)"), cmd_users_revoke_key),
        ("disable", "disable a user: their keys and JWTs stop working", ("name", "user name"), cmd_users_disable),
        ("enable", "enable a disabled user again", ("name", "user name"), cmd_users_enable),
    ]
    for command, help_text, positional, fn in simple:
        p = users_sub.add_parser(command, help=help_text)
        if positional is not None:
            p.add_argument(positional[0], help=positional[1])
        p.add_argument("--config", default=None, help="configuration directory")
        p.set_defaults(func=bind(fn))

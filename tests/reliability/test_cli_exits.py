"""Issue 10, item 8: every `cozy` admin command exits promptly, with Redis configured or not.

Measured before the fix: `cozy users create NAME` with REDIS_URL set hung in 3 of 4 runs (the
user and key were written, then `asyncio.run` waited forever). Each command here runs RUNS times
as its own process against the machine's PostgreSQL (a throwaway database) and Redis (its own key
prefix), with a hard timeout; every run must exit 0 in under LIMIT_S.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cozy_actors.cache.link import RedisLink
from cozy_actors.queue import QueuePolicy, StreamQueue
from tests.support.pg import REDIS_URL, create_database, drop_database, drop_redis_prefix, redis_prefix
from tests.support.procs import REPO_ROOT

RUNS = 4
LIMIT_S = 5.0  # the bound; a run here takes about 1 s (mostly imports) on 2 loaded cores
HANG_S = 15.0  # a run still alive after this is killed and reported as hung
STOPS = 60  # in-process consumer stops (1 in 7 to 1 in 10 hung before the fix)
STOP_LIMIT_S = 3.0  # a consumer blocks in XREADGROUP for 1 s at most, so a stop takes ~1 s at worst


@dataclass
class Run:
    args: tuple[str, ...]
    rc: int | None  # None: hung, killed after HANG_S
    seconds: float
    stdout: str
    stderr: str


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.runs: list[Run] = []

    def __call__(self, *args: str, extra_env: dict[str, str] | None = None) -> Run:
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "cozy_http.cli", *args, "--config", str(REPO_ROOT / "config")],
                cwd=REPO_ROOT,
                env={**self.env, **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=HANG_S,
            )
            run = Run(args, done.returncode, time.monotonic() - started, done.stdout, done.stderr)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            run = Run(args, None, time.monotonic() - started, out, err)
        self.runs.append(run)
        return run

    def problems(self) -> list[str]:
        bad = [r for r in self.runs if r.rc != 0 or r.seconds >= LIMIT_S]
        return [
            f"cozy {' '.join(r.args)}: {'HUNG (killed)' if r.rc is None else f'rc={r.rc}'} after {r.seconds:.2f} s"
            f"{'' if r.rc == 0 else ': ' + r.stderr.strip()[-400:]}"
            for r in bad
        ]


@pytest.fixture(params=[True, False], ids=["redis", "no-redis"])
def cli(request: pytest.FixtureRequest) -> Iterator[Cli]:
    """The CLI on a fresh database, with REDIS_URL (own prefix) or without it."""
    name, url = create_database("cozy_test")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "COZY_REDIS_PREFIX")}
    env.update(DATABASE_URL=url, COZY_LOG_LEVEL="warning", PYTHONUNBUFFERED="1")
    prefix = None
    if request.param:
        prefix = redis_prefix("cli")
        env.update(REDIS_URL=REDIS_URL, COZY_REDIS_PREFIX=prefix)
    try:
        yield Cli(env)
    finally:
        drop_database(name)
        if prefix:
            drop_redis_prefix(prefix)


def _active_key_id(keys_output: str) -> str:
    """The id of the first key that is not revoked, from `cozy users keys` (tab-separated)."""
    rows = [line.split("\t") for line in keys_output.strip().splitlines()[1:]]
    return next(r[0] for r in rows if r[-1] == "-")


def test_every_admin_command_exits_promptly(cli: Cli) -> None:
    names = [f"cli{uuid.uuid4().hex[:8]}" for _ in range(RUNS)]
    for _ in range(RUNS):
        cli("db", "migrate")
    for i, name in enumerate(names):  # two admins: either may be disabled
        flags = ("--admin",) if i in (1, 3) else ("--password",) if i == 2 else ()
        made = cli("users", "create", name, *flags, extra_env={"COZY_NEW_USER_PASSWORD": "a long password"})
        assert made.rc != 0 or made.stdout.strip().startswith("cozy-"), made.stdout
    key_ids = []
    for name in names:
        listed = cli("users", "keys", name)
        if listed.rc == 0:
            key_ids.append(_active_key_id(listed.stdout))
    for _ in range(RUNS):
        listed = cli("users", "list")
    assert listed.rc != 0 or all(n in listed.stdout for n in names), listed.stdout
    for key_id in key_ids:
        cli("users", "revoke-key", key_id)
    for name in names:
        cli("users", "disable", name)
        cli("users", "enable", name)
    for _ in range(RUNS):
        cli("config", "check")
    problems = cli.problems()
    slowest = max(cli.runs, key=lambda r: r.seconds)
    assert not problems, f"{len(problems)} of {len(cli.runs)} runs failed or were slow:\n" + "\n".join(problems)
    assert len(cli.runs) == 8 * RUNS, [r.args for r in cli.runs]
    print(f"{len(cli.runs)} runs, slowest {slowest.seconds:.2f} s (cozy {' '.join(slowest.args)})")


async def test_a_redis_stream_consumer_stops_wherever_the_stop_lands() -> None:
    """The root cause: on Python 3.11 redis-py's `wait_for` around each socket write swallows a
    cancel that lands as the write completes, so `task.cancel(); await task` could wait forever
    for the Redis Streams consumer (the server's shutdown too, not only the CLI's)."""
    prefix = redis_prefix("stop")
    link = RedisLink(REDIS_URL, prefix=prefix)
    written: list[Any] = []

    async def handler(batch: list[Any]) -> None:
        written.extend(batch)

    loop = asyncio.get_running_loop()
    slow = []
    try:
        for i in range(STOPS):
            queue = StreamQueue(link, QueuePolicy(block_s=1.0))
            queue.register("t", handler)
            await queue.start()
            await queue.publish("t", {"i": i})  # the consumer then also writes (XACK, XDEL, XLEN)
            await asyncio.sleep(random.uniform(0, 0.01))
            consumers, started = list(queue._tasks.values()), loop.time()
            stopper = asyncio.create_task(queue.stop())
            done, _ = await asyncio.wait({stopper}, timeout=STOP_LIMIT_S)
            if not done:
                slow.append(i)
                for task in consumers:
                    task.cancel()
                stopper.cancel()
                await asyncio.wait({stopper}, timeout=2)
                continue
            assert loop.time() - started < STOP_LIMIT_S
    finally:
        await link.close()
        drop_redis_prefix(prefix)
    assert not slow, f"{len(slow)} of {STOPS} stops did not finish within {STOP_LIMIT_S} s: {slow}"

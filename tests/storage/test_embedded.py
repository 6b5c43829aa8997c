"""The embedded PostgreSQL (the zero-setup default): fresh start in a data dir, migrations, data
kept across a restart, and no server process left behind after stop."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil

from cozy_actors.storage.db import Database
from cozy_actors.storage.embedded import EmbeddedPostgres
from cozy_actors.storage.migrate import migrate
from tests.support.procs import start_process


def servers_for(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info.get("name") == "postgres" and str(pgdata) in cmd:
            found.append(proc)
    return found


async def test_embedded_first_start_restart_and_clean_stop(tmp_path: Path) -> None:
    pgdata = tmp_path / "data" / "postgres"
    embedded = EmbeddedPostgres(pgdata)
    started = time.perf_counter()
    url = await embedded.start()
    first_start_s = time.perf_counter() - started
    try:
        assert url.startswith("postgresql://postgres:@/postgres?host=")
        db = Database(url)
        await db.start()
        async with db.connection("migrate") as conn:
            assert await migrate(conn)
        await db.execute("t", "INSERT INTO users (name, role) VALUES ('ann', 'admin')")
        await db.close()
    finally:
        await embedded.stop()
    assert not servers_for(pgdata), "embedded PostgreSQL still running after stop()"
    print(f"embedded PostgreSQL first start (initdb + start): {first_start_s:.2f} s")
    assert first_start_s < 15

    again = EmbeddedPostgres(pgdata)
    started = time.perf_counter()
    url = await again.start()
    restart_s = time.perf_counter() - started
    try:
        db = Database(url)
        await db.start()
        async with db.connection("migrate") as conn:
            assert await migrate(conn) == []  # already at the latest version
        assert await db.fetchval("t", "SELECT name FROM users") == "ann"
        await db.close()
    finally:
        await again.stop()
    assert not servers_for(pgdata)
    print(f"embedded PostgreSQL restart: {restart_s:.2f} s")


CHILD = """
import asyncio, sys
from pathlib import Path
from cozy_actors.storage.embedded import EmbeddedPostgres

async def main():
    await EmbeddedPostgres(Path(sys.argv[1])).start()
    print("EMBEDDED_READY", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_a_killed_owner_does_not_leave_postgres_running(tmp_path: Path) -> None:
    """SIGKILL of the owning process (and its process group): the watchdog stops PostgreSQL."""
    pgdata = tmp_path / "killed" / "postgres"
    owner = start_process([sys.executable, "-c", CHILD, str(pgdata)], r"EMBEDDED_READY", timeout=60)
    assert servers_for(pgdata)
    os.killpg(owner.pid, signal.SIGKILL)
    owner.stop()
    deadline = time.monotonic() + 20
    while servers_for(pgdata) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not servers_for(pgdata), "PostgreSQL outlived its killed owner"

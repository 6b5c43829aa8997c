"""Hold each worker process of a benchmarked server to a fixed CPU share (Linux cgroup v1 `cpu`).

Why: on a 2-core machine the load generator, the stub and PostgreSQL share the cores with the
server, so "two workers hold how many more sessions than one" is capped by the machine long
before the server stops scaling (one worker already keeps ~1.2 cores busy with its inference
threads). Giving every worker the same quota (e.g. 0.45 of a core) leaves the rest of the machine
to the load and asks the question the ratio is about: does a second worker, with its own share
of CPU, hold twice the sessions, or does something shared (the database, the port, the parent)
stop it. Threads a worker starts later stay in its group; the groups are removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CPU = Path("/sys/fs/cgroup/cpu")
PERIOD_US = 100_000


def worker_pids(server_pid: int, workers: int) -> list[int]:
    """The processes that serve: the server itself with one worker, else the children that
    `cozy serve --workers N` spawned (multiprocessing's `spawn_main`; not the embedded PostgreSQL
    nor multiprocessing's resource tracker)."""
    if workers == 1:
        return [server_pid]
    pids = []
    for child in Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split():
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            pids.append(int(child))
    if len(pids) != workers:
        raise RuntimeError(f"expected {workers} worker processes under {server_pid}, found {pids}")
    return pids


def cap(pids: list[int], cores: float) -> list[Path]:
    """Put each process in its own group limited to `cores` of CPU time; returns the groups."""
    if not (CPU / "cgroup.procs").exists():
        raise RuntimeError(f"--cpu-per-worker needs the cgroup v1 cpu controller at {CPU}")
    groups = []
    for pid in pids:
        group = CPU / f"cozy-bench-{os.getpid()}-{pid}"
        group.mkdir()
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(int(cores * PERIOD_US)))
        (group / "cgroup.procs").write_text(str(pid))  # moves every thread of the process
        groups.append(group)
    return groups


def throttled_s(groups: list[Path]) -> float:
    """Seconds the groups' processes spent throttled (waiting for their quota) so far."""
    total = 0
    for group in groups:
        for line in (group / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "throttled_time":
                total += int(value)
    return total / 1e9


def release(groups: list[Path]) -> None:
    """Remove the groups (their processes have exited by now; any left go back to the root)."""
    for group in groups:
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                (CPU / "cgroup.procs").write_text(pid)
            group.rmdir()

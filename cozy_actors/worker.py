"""This process's identity among the worker processes and nodes that serve one deployment.

Why: `cozy serve --workers N` starts N processes on one port (cozy_http/workers.py); each must
name itself the same way everywhere (the `x-cozy-worker` response header, leases, quota rows),
and know whether it shares its limits with siblings. The parent sets `COZY_WORKER_ID` and
`COZY_WORKER_COUNT` for each child; a single process (`--workers 1`) has neither and names itself
after its host and pid.
"""

from __future__ import annotations

import os
import socket

WORKER_ID_ENV = "COZY_WORKER_ID"
WORKERS_ENV = "COZY_WORKER_COUNT"


def worker_id() -> str:
    """`COZY_WORKER_ID`, else `<hostname>-<pid>` (unique per live process on a host)."""
    return os.environ.get(WORKER_ID_ENV) or f"{socket.gethostname()}-{os.getpid()}"


def sibling_workers() -> int:
    """How many worker processes share this node's port (1 outside `cozy serve --workers N`)."""
    try:
        return max(1, int(os.environ.get(WORKERS_ENV, "1")))
    except ValueError:
        return 1

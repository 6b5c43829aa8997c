"""One worker of `cozy serve --workers N`: the child side of cozy_http/workers.py.

A worker is uvicorn's own supervised `Process` (spawned, answering the parent's health pings on
a pipe) whose target builds the CozyEngine app in the child: models load once per worker, the
database is the parent's (DATABASE_URL). Its one uvicorn server listens on two sockets with the
same app: the public one the parent bound and shares, and a private one on
`api.internal_host:0` whose URL is the worker's address for forwarded requests (DESIGN,
Placement), so both drain together and the lifespan runs once. Module-level imports stay light:
the parent imports this module too.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.server import Server
from uvicorn.supervisors.multiprocess import Process

from .serving import advertised_url

log = logging.getLogger("cozy.workers")
PLACEHOLDER_APP = "cozy_http.worker_process:placeholder"  # the parent's Config never loads it


async def placeholder(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never served
    raise RuntimeError("a worker serves the app it builds itself")


class WorkerProcess(Process):
    """uvicorn's worker process (spawn, pipe health check, terminate/kill), running our worker."""

    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket],
        *,
        slot: int,
        worker_id: str,
        config_dir: str | None,
        env: dict[str, str],
    ) -> None:
        self.slot = slot
        self.worker_id = worker_id
        self.config_dir = config_dir
        self.env = env
        self.started_at = time.monotonic()
        super().__init__(config, sockets)

    def target(self, sockets: list[socket.socket] | None = None) -> None:  # pragma: no cover - runs in the child
        os.environ.update(self.env)
        self._server = Server(self.config)  # pongs say "not started" until the lifespan is done
        threading.Thread(target=self.always_pong, daemon=True, name="cozy-worker-pong").start()
        _exit_with_parent(os.getppid())
        code = run_worker(self._server, list(sockets or []), self.config_dir)
        sys.exit(code)


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (kill -9) drains and exits instead of serving on alone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.warning("the parent process %d is gone: draining", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="cozy-worker-parent").start()


def own_listener(public: socket.socket) -> socket.socket:
    """This worker's own listening socket on the parent's public port (SO_REUSEPORT: the kernel
    spreads new connections over the workers; see workers.public_socket). Without SO_REUSEPORT
    the parent's socket is shared as is."""
    if not hasattr(socket, "SO_REUSEPORT"):
        return public
    own = socket.socket(public.family, socket.SOCK_STREAM)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    own.bind(public.getsockname()[:2])
    public.close()  # the child's copy only: the parent keeps the port
    return own


def internal_socket(host: str) -> tuple[socket.socket, str]:
    """This worker's private listener on `host` (any free port) and the URL others reach it at."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.set_inheritable(True)
    return sock, advertised_url(host, sock.getsockname()[1])


def run_worker(server: Server, sockets: list[socket.socket], config_dir: str | None) -> int:  # pragma: no cover
    """Load settings, build the app, serve until SIGTERM/SIGINT; STARTUP_FAILURE if it cannot start."""
    from pathlib import Path

    from pydantic import SecretStr

    from cozy_actors.config import ConfigError, load_settings
    from cozy_actors.services import CozyServices, StartupError
    from cozy_actors.worker import worker_id

    from .app import create_app
    from .logs import configure_logging

    try:
        settings = load_settings(Path(config_dir) if config_dir else None)
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return STARTUP_FAILURE
    # What the parent decided holds even where a config file does not read these variables.
    if os.environ.get("DATABASE_URL"):
        settings.storage.database_url = SecretStr(os.environ["DATABASE_URL"])
    if os.environ.get("JWT_SECRET_KEY") and settings.security.jwt_secret_key is None:
        settings.security.jwt_secret_key = SecretStr(os.environ["JWT_SECRET_KEY"])
    if os.environ.get("COZY_WORKER_POOL_MAX"):  # the parent's share of the embedded server's connections
        st = settings.storage
        st.pool_max_size = int(os.environ["COZY_WORKER_POOL_MAX"])
        st.pool_min_size = min(st.pool_min_size, st.pool_max_size)
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    internal, address = internal_socket(settings.api.internal_host)
    services = CozyServices(settings)
    try:
        app = create_app(settings, services)
    except StartupError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return STARTUP_FAILURE
    services.placement.address = address  # before services.start() (the lifespan) registers it
    log.info("worker %s: internal address %s", worker_id(), address)
    server.config.app = app
    server.run(sockets=[*[own_listener(s) for s in sockets], internal])
    return 0 if server.started else STARTUP_FAILURE

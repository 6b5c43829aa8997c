"""`cozy serve --workers N`: one port, N worker processes, one embedded PostgreSQL for all.

The parent does what must happen once, then supervises: it starts the embedded PostgreSQL when
there is no DATABASE_URL (its URL goes to every worker), applies the migrations and prepares the
first admin (so N workers never race to create it), picks one JWT secret for all when none is
configured (a token signed by one worker must verify on the others), binds the public socket
and hands it to the workers (cozy_http/worker_process.py). A worker that dies is replaced; on
SIGTERM/SIGINT every worker drains (its lifespan shutdown runs), then PostgreSQL stops, last.
The processes are uvicorn's (`uvicorn.supervisors.multiprocess.Process`); the loop is ours
because uvicorn's Multiprocess neither knows a worker's slot (its id) nor bounds the drain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any

from pydantic import SecretStr
from uvicorn.config import STARTUP_FAILURE, Config

from cozy_actors.config import Settings
from cozy_actors.worker import WORKER_ID_ENV, WORKERS_ENV

from .serving import uvicorn_config
from .worker_process import PLACEHOLDER_APP, WorkerProcess

log = logging.getLogger("cozy.workers")
DRAIN_S = 40.0  # uvicorn's graceful timeout (10 s) + the actors' drain (10 s) + engines and storage closing
EMBEDDED_CONNECTIONS = 90  # of the embedded server's 100, leaving some for `cozy users ...` and `psql`
POOL_ENV = "COZY_WORKER_POOL_MAX"  # a worker's pool_max_size when the parent had to share the connections out
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # a worker that keeps dying is restarted ever more slowly


class WorkerSupervisor:
    """Keeps `count` workers alive on `sockets` until told to stop; then drains them all."""

    def __init__(
        self,
        config: Config,
        sockets: list[socket.socket],
        *,
        count: int,
        base_id: str,
        config_dir: str | None,
        env: dict[str, str],
    ) -> None:
        self.config = config
        self.sockets = sockets
        self.count = count
        self.base_id = base_id
        self.config_dir = config_dir
        self.env = env
        self.processes: list[WorkerProcess | None] = [None] * count
        self.failures = [0] * count
        self.should_exit = threading.Event()
        self.startup_failed = False
        self.restarts = 0

    def worker_id(self, slot: int) -> str:
        return f"{self.base_id}-w{slot}"

    def spawn(self, slot: int) -> WorkerProcess:
        worker_id = self.worker_id(slot)
        env = {**self.env, WORKER_ID_ENV: worker_id}
        process = WorkerProcess(
            self.config, self.sockets, slot=slot, worker_id=worker_id, config_dir=self.config_dir, env=env
        )
        process.start()
        self.processes[slot] = process
        log.info("worker %s started (pid %s)", worker_id, process.pid)
        return process

    def handle_signal(self, sig: int, frame: FrameType | None) -> None:
        self.should_exit.set()

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.handle_signal)
        for slot in range(self.count):
            self.spawn(slot)
        while not self.should_exit.wait(0.5):
            self.keep_alive()
        self.drain()
        return 2 if self.startup_failed else 0

    def keep_alive(self) -> None:
        """Replace a worker that exited or stopped answering its health pings."""
        for slot, process in enumerate(self.processes):
            if self.should_exit.is_set() or process is None:
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                self.failures[slot] = 0 if time.monotonic() - process.started_at > 60 else self.failures[slot]
                continue
            process.kill()  # exited, or hung: make sure it is gone
            process.join()
            if process.exitcode == STARTUP_FAILURE:  # bad configuration or engines: restarting cannot help
                log.error("worker %s could not start (exit %s): stopping", process.worker_id, process.exitcode)
                self.startup_failed = True
                self.should_exit.set()
                return
            delay = RESTART_BACKOFF_S[min(self.failures[slot], len(RESTART_BACKOFF_S) - 1)]
            self.failures[slot] += 1
            log.warning(
                "worker %s (pid %s) died (exit %s): restarting in %.1f s",
                process.worker_id,
                process.pid,
                process.exitcode,
                delay,
            )
            if self.should_exit.wait(delay):
                return
            self.restarts += 1
            self.spawn(slot)

    def drain(self) -> None:
        """SIGTERM every worker at once (each drains its connections and actors), wait, then kill."""
        live = [p for p in self.processes if p is not None]
        log.info("draining %d worker(s)", len(live))
        for process in live:
            if process.process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM)  # type: ignore[arg-type]
        deadline = time.monotonic() + DRAIN_S
        for process in live:
            process.process.join(max(0.0, deadline - time.monotonic()))
            if process.process.exitcode is None:
                log.error("worker %s did not drain within %.0f s: killed", process.worker_id, DRAIN_S)
                process.kill()
                process.process.join(5)
            else:
                log.info("worker %s stopped (exit %s)", process.worker_id, process.exitcode)


async def _prepare(settings: Settings) -> Any:
    """Embedded PostgreSQL (if no DATABASE_URL), migrations and the first admin, once for all
    workers; returns the embedded server to stop last (None with an external database)."""
    from cozy_actors.infra import Infra, data_dir
    from cozy_actors.storage.embedded import EmbeddedPostgres

    embedded = None
    if settings.storage.database_url is None:
        embedded = EmbeddedPostgres(data_dir(settings) / "postgres")
        started = time.perf_counter()
        url = await embedded.start()
        settings.storage.database_url = SecretStr(url)
        log.info(
            "database: embedded PostgreSQL in %s (ready in %.2f s), shared by the workers; "
            "set DATABASE_URL to use another server",
            embedded.pgdata,
            time.perf_counter() - started,
        )
    infra = Infra(settings, queue_on_redis=False)  # the first admin's audit event goes straight in
    try:
        await infra.open_database()
        await infra.queue.start()
        await infra.audit.start()
        await infra.auth.start()  # logs a newly made first admin key, once
    except BaseException:
        await infra.stop()
        if embedded is not None:
            await embedded.stop()
        raise
    await infra.stop()
    return embedded


def serve_workers(settings: Settings, config_dir: str | None, *, host: str, port: int, workers: int) -> int:
    """Run the parent of `workers` worker processes on host:port; the process's exit code."""
    from cozy_actors.services import CozyServices, StartupError
    from cozy_core.errors import CozyError

    try:  # a bad configuration stops here, before anything starts (as `cozy config check`)
        CozyServices(settings).build()
    except StartupError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return 2
    jwt_secret = None
    if settings.security.jwt_secret_key is None:  # one secret for all workers: a token from one verifies on all
        jwt_secret = secrets.token_urlsafe(48)
        settings.security.jwt_secret_key = SecretStr(jwt_secret)
        log.warning("JWT_SECRET_KEY is not set: JWTs are signed with a random secret that dies with this server")
    try:
        embedded = asyncio.run(_prepare(settings))
    except CozyError as exc:
        print(f"cozy serve: {exc}", file=sys.stderr)
        return 2
    env = {WORKERS_ENV: str(workers)}
    if embedded is not None:  # its max_connections is 100: N pools (+ a listener each) must fit, with room for CLIs
        per_worker = max(2, EMBEDDED_CONNECTIONS // workers - 1)
        if per_worker < settings.storage.pool_max_size:
            env[POOL_ENV] = str(per_worker)
            log.info("database: %d connections per worker (embedded PostgreSQL allows 100 in all)", per_worker)
    assert settings.storage.database_url is not None
    env["DATABASE_URL"] = settings.storage.database_url.get_secret_value()
    if jwt_secret is not None:
        env["JWT_SECRET_KEY"] = jwt_secret
    try:
        # A worker answers the parent's pings from a thread; 20 s (not uvicorn's 5) so a worker still
        # starting on a loaded machine is not taken for a hung one and killed.
        config = uvicorn_config(settings, PLACEHOLDER_APP, host=host, port=port, timeout_worker_healthcheck=20)
        sock = public_socket(host, port)
        bound = sock.getsockname()
        base_id = os.environ.get(WORKER_ID_ENV) or f"{socket.gethostname()}-{os.getpid()}"
        log.info("cozy serve: %d workers on http://%s:%d (parent pid %d)", workers, bound[0], bound[1], os.getpid())
        supervisor = WorkerSupervisor(config, [sock], count=workers, base_id=base_id, config_dir=config_dir, env=env)
        code = supervisor.run()
        sock.close()
    finally:
        if embedded is not None:  # last: every worker has flushed its writes
            asyncio.run(embedded.stop())
            log.info("database: embedded PostgreSQL stopped")
    return code


def public_socket(host: str, port: int) -> socket.socket:
    """The one public port, bound (never listened on) by the parent with SO_REUSEPORT.

    Why: with one shared listening socket, whichever worker is first in accept() takes nearly every
    new connection (measured: 12 fresh connections in a row on one of two idle workers). Each
    worker instead listens on its own SO_REUSEPORT socket on this port (`worker_process`), and the
    kernel spreads connections over them by their address hash, as nginx's `reuseport` does. The
    parent's bound socket keeps the port (port 0: picks it) while workers come and go."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        log.error("cannot bind %s:%d: %s", host, port, exc)
        raise SystemExit(1) from None
    sock.set_inheritable(True)
    return sock

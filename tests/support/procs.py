"""Run servers as subprocesses for tests and benchmarks, and never leave one behind.

Every process started here is stopped by ``ManagedProcess.stop()``, by the context manager, at
interpreter exit (atexit), and on Linux also by the kernel if this process dies (PDEATHSIG).
Output (stdout and stderr merged) is drained by a thread for the process's whole life, so a
chatty child can never block on a full pipe; the last lines are kept for error messages.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
_live: set[ManagedProcess] = set()
_live_lock = threading.Lock()


class ProcessStartError(RuntimeError):
    """The child exited or did not become ready in time; the message holds its output."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (prefer ``--port 0`` where the server supports it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> Callable[[], None] | None:
    """preexec hook asking Linux to SIGKILL the child when its parent dies (main thread only:
    PDEATHSIG fires when the *thread* that forked exits)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def hook() -> None:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    return hook


class ManagedProcess:
    """A started child process; ``match`` is the ready-pattern match (None without a pattern)."""

    def __init__(self, proc: subprocess.Popen[bytes], pattern: re.Pattern[str] | None) -> None:
        self.proc = proc
        self.match: re.Match[str] | None = None
        self.lines: deque[str] = deque(maxlen=2000)
        self._pattern = pattern
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._pump, name=f"proc-{proc.pid}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        """The child's process id (also its process group id)."""
        return self.proc.pid

    def output(self) -> str:
        """The last output lines, for error messages and debugging."""
        return "\n".join(self.lines)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(line)
            if self.match is None and self._pattern is not None and (m := self._pattern.search(line)):
                self.match = m
                self._ready.set()
        self._ready.set()  # EOF: wake the waiter so it sees the exit

    def wait_ready(self, timeout: float) -> re.Match[str] | None:
        """Block until the ready pattern matched; raise ProcessStartError on exit or timeout."""
        if self._pattern is None:
            return None
        if not self._ready.wait(timeout) or self.match is None:
            code = self.proc.poll()
            self.stop()
            why = f"exited with code {code}" if code is not None else f"not ready after {timeout:.0f} s"
            raise ProcessStartError(
                f"{self.proc.args!r} {why} (waiting for /{self._pattern.pattern}/). Output:\n{self.output()}"
            )
        return self.match

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds; returns the exit code."""
        with _live_lock:
            _live.discard(self)
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # grandchildren left in the group
        self._reader.join(2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_process(
    args: list[str],
    ready_pattern: str | None,
    env: dict[str, str] | None = None,
    timeout: float = 30,
    cwd: str | Path | None = None,
) -> ManagedProcess:
    """Launch ``args`` (cwd: repo root; ``env`` is added to os.environ) and wait until a line of
    its output matches ``ready_pattern`` (None: return at once, e.g. to poll HTTP instead)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.Popen(
        args,
        cwd=str(cwd or REPO_ROOT),
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # own process group: stop() reaches its children too
        preexec_fn=_die_with_parent(),  # kill the child if we die
    )
    managed = ManagedProcess(proc, re.compile(ready_pattern) if ready_pattern else None)
    with _live_lock:
        _live.add(managed)
    managed.wait_ready(timeout)
    return managed


def wait_http_ok(
    url: str, timeout: float = 30, process: ManagedProcess | None = None, headers: dict[str, str] | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail early (with its output) if ``process`` exits."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if process is not None and process.proc.poll() is not None:
            time.sleep(0.2)  # let the reader collect the last lines
            out = process.output()
            process.stop()
            raise ProcessStartError(f"{process.proc.args!r} exited with code {process.proc.returncode}. Output:\n{out}")
        try:
            last = httpx.get(url, timeout=2, headers=headers)
            if last.status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    detail = f"\nOutput:\n{process.output()}" if process is not None else ""
    if process is not None:
        process.stop()
    raise ProcessStartError(f"{url} not answering 200 after {timeout:.0f} s (last: {last!r}){detail}")


def cozy_serve_args(
    port: int, config_dir: str | Path | None = None, python: str = sys.executable, extra: Sequence[str] = ()
) -> list[str]:
    """The `cozy serve` command line on 127.0.0.1:`port` (same entry point as the `cozy` command);
    `extra`: more `serve` options (e.g. `--workers 2`)."""
    config = ["--config", str(config_dir)] if config_dir else []
    return [python, "-m", "cozy_http.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *config, *extra]


def start_cozy_serve(
    env: dict[str, str],
    *,
    config_dir: str | Path | None = None,
    ready_path: str = "/ready",
    timeout: float = 180,
    python: str = sys.executable,
    extra_args: Sequence[str] = (),
) -> tuple[ManagedProcess, str]:
    """`cozy serve` on a free port with `env` added (and `extra_args` on its command line); returns
    (process, root URL) once `ready_path` answers 200 (raises with the server's output if it exits
    or stays unready)."""
    port = free_port()
    process = start_process(cozy_serve_args(port, config_dir, python, extra_args), None, env=env)
    root = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{root}{ready_path}", timeout=timeout, process=process)
    workers = int(extra_args[list(extra_args).index("--workers") + 1]) if "--workers" in extra_args else 1
    if workers > 1:
        wait_workers_ready(f"{root}{ready_path}", workers, timeout=timeout)
    return process, root


def wait_workers_ready(url: str, workers: int, timeout: float = 120) -> None:
    """Until `workers` distinct workers (x-cozy-worker) have answered `url` 200: the first ready
    worker is not all of them, and a load sent meanwhile would wait for the others' models."""
    deadline, ready = time.monotonic() + timeout, set()
    while len(ready) < workers:
        if time.monotonic() > deadline:
            raise ProcessStartError(f"only {sorted(ready)} of {workers} workers ready after {timeout:.0f} s")
        try:
            r = httpx.get(url, timeout=2)  # a new connection each time: the kernel picks a worker
            if r.status_code == 200 and r.headers.get("x-cozy-worker"):
                ready.add(r.headers["x-cozy-worker"])
        except httpx.HTTPError:
            pass
        time.sleep(0.05)


def bench_server_env(stub_url: str, admin_key: str, data_dir: Path) -> dict[str, str]:
    """The environment of a benchmark's `cozy serve`: the stub upstream as its LLM, an admin key,
    its own data dir (embedded PostgreSQL), and rate limits out of the way of the load."""
    return {
        "COZY_LLM_BASE_URL": stub_url,
        "COZY_LLM_MODEL": "stub-model",
        "COZY_LLM_API_KEY": "stub",
        "COZY_BOOTSTRAP_ADMIN_KEY": admin_key,
        "COZY_LOG_LEVEL": "warning",
        "COZY_DATA_DIR": str(data_dir),
        "COZY_RATE_LIMIT_RPM": "1000000",
        "COZY_RATE_LIMIT_BURST": "100000",
    }


class StubLLMServer:
    """Handle on a running stub LLM (tests/support/stub_llm.py) for fixtures and benchmarks."""

    def __init__(self, process: ManagedProcess, base_url: str) -> None:
        self.process = process
        self.base_url = base_url  # http://127.0.0.1:<port>/v1
        self.root_url = base_url.removesuffix("/v1")

    def requests(self) -> list[dict[str, Any]]:
        """The chat request bodies the stub received (last 200, oldest first)."""
        response = httpx.get(f"{self.root_url}/_stub/requests", timeout=10)
        response.raise_for_status()
        return response.json()

    def clear(self) -> None:
        """Forget the recorded requests."""
        httpx.delete(f"{self.root_url}/_stub/requests", timeout=10).raise_for_status()

    def stop(self) -> None:
        """Stop the stub process."""
        self.process.stop()

    def __enter__(self) -> StubLLMServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_stub_llm(
    ttft_ms: float = 0, token_ms: float = 0, tokens: int | None = None, timeout: float = 30
) -> StubLLMServer:
    """Start the stub LLM on a free port and return its handle once it listens."""
    args = [sys.executable, "-m", "tests.support.stub_llm", "--port", "0"]
    if ttft_ms:
        args += ["--ttft-ms", str(ttft_ms)]
    if token_ms:
        args += ["--token-ms", str(token_ms)]
    if tokens is not None:
        args += ["--tokens", str(tokens)]
    process = start_process(args, r"STUB_LISTENING (\S+)", timeout=timeout)
    assert process.match is not None
    return StubLLMServer(process, process.match[1])


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        leftovers = list(_live)
    for managed in leftovers:
        managed.stop(grace=2.0)

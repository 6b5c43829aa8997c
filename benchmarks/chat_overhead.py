"""How much latency CozyEngine adds on top of the upstream LLM, for /v1/chat/completions.

Starts the stub LLM (tests/support/stub_llm.py, paced like a fast model) and CozyEngine pointed at
it, then fires the same requests (a) straight at the stub and (b) through CozyEngine, and reports
(b) - (a).  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script: python benchmarks/chat_overhead.py

import httptools  # noqa: E402
import httpx  # noqa: E402
import orjson  # noqa: E402

from benchmarks import cpu_cap  # noqa: E402
from tests.support.procs import ManagedProcess, start_cozy_serve, start_stub_llm  # noqa: E402

TARGETS = {"overhead_p50_ms": 5.0, "overhead_p99_ms": 20.0, "cozy_rps": 300.0}


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection parsed by httptools: far cheaper than httpx, whose
    client CPU would otherwise compete with the server on a 2-core machine."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None
        self.sink: Any = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)
        if self.transport is not None:
            self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.sink(body)

    def on_message_complete(self) -> None:
        if not self.parser.should_keep_alive():
            self.closed = True
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    async def request(self, raw: bytes, sink: Any) -> int:
        """Send one request; body bytes go to ``sink``; returns the HTTP status."""
        self.done = asyncio.get_running_loop().create_future()
        self.sink = sink
        assert self.transport is not None
        self.transport.write(raw)
        return await self.done


class _SSEScan:
    """Watches a chat stream: time of the first non-empty content delta, and the final [DONE]."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.buf = b""
        self.tail = b""
        self.error: str | None = None

    def feed(self, data: bytes) -> None:
        self.tail = (self.tail + data)[-64:]
        if self.first is not None:
            return
        self.buf += data.replace(b"\r\n", b"\n")
        *events, self.buf = self.buf.split(b"\n\n")
        for event in events:
            for line in event.split(b"\n"):
                payload = line[5:].strip() if line.startswith(b"data:") else b""
                if not payload or payload == b"[DONE]":
                    continue
                chunk = orjson.loads(payload)
                if "error" in chunk:
                    self.error = str(chunk["error"])[:200]
                choices = chunk.get("choices") or [{}]
                if self.first is None and (choices[0].get("delta") or {}).get("content"):
                    self.first = time.perf_counter()

    def finished(self) -> bool:
        return self.tail.rstrip().endswith(b"data: [DONE]")


@dataclass
class Target:
    """An endpoint under test, with one keep-alive connection per worker."""

    name: str
    url: str
    headers: dict[str, str]
    client: str
    conns: list[_Conn | None] = field(default_factory=list)
    http: httpx.AsyncClient | None = None

    def raw_request(self, body: bytes) -> bytes:
        parts = urlsplit(self.url)
        head = [
            f"POST {parts.path} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in self.headers.items()),
        ]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body

    async def conn(self, i: int) -> _Conn:
        conn = self.conns[i]
        if conn is None or conn.closed:
            parts = urlsplit(self.url)
            _, conn = await asyncio.get_running_loop().create_connection(_Conn, parts.hostname, parts.port or 80)
            self.conns[i] = conn
        return conn

    async def one(self, i: int, body: bytes, raw: bytes, stream: bool) -> tuple[float, float | None]:
        """One request; returns (seconds to last byte, seconds to first content or None)."""
        scan, chunks = _SSEScan(), []
        sink = scan.feed if stream else chunks.append
        t0 = time.perf_counter()
        if self.http is not None:
            async with self.http.stream("POST", self.url, content=body, headers=self.headers) as resp:
                async for data in resp.aiter_raw():
                    sink(data)
                status = resp.status_code
        else:
            status = await (await self.conn(i)).request(raw, sink)
        t1 = time.perf_counter()
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {(b''.join(chunks) or scan.buf)[:200]!r}")
        if stream:
            if scan.error or not scan.finished() or scan.first is None:
                msg = f"bad stream: error={scan.error} done={scan.finished()} content={bool(scan.first)}"
                raise RuntimeError(msg)
            return t1 - t0, scan.first - t0
        if not orjson.loads(b"".join(chunks))["choices"][0]["message"]:
            raise RuntimeError("no message in response")
        return t1 - t0, None

    async def open(self, concurrency: int) -> None:
        self.conns = [None] * concurrency
        if self.client == "httpx":
            limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            self.http = httpx.AsyncClient(limits=limits, timeout=120)

    async def close(self) -> None:
        for conn in self.conns:
            if conn is not None and conn.transport is not None:
                conn.transport.close()
        if self.http is not None:
            await self.http.aclose()


def _cpu_seconds(pgid: int | None) -> float | None:
    """CPU time used so far by every process in a process group (Linux /proc), else None."""
    if pgid is None or not os.path.isdir("/proc"):
        return None
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def run_phase(
    target: Target,
    n: int,
    c: int,
    stream: bool,
    pgids: dict[str, int | None],
    session: str | None = None,
    cozy_ext: dict[str, Any] | None = None,
) -> dict:
    """N requests at concurrency C against one target; latency percentiles, req/s, errors, CPU.
    With `session`, worker i sends `cozy.session_id = <session>-<i>` (a persisted conversation each;
    one turn at a time per session, as a real client does)."""
    base = {
        "model": "stub-model",
        "messages": [{"role": "user", "content": "hello"}],
        **({"stream": True} if stream else {}),
    }
    ext = [{**(cozy_ext or {}), **({"session_id": f"{session}-{i}"} if session else {})} for i in range(c)]
    bodies = [orjson.dumps({**base, "cozy": ext[i]} if ext[i] else base) for i in range(c)]
    raws = [target.raw_request(b) for b in bodies]
    latencies: list[float] = []
    firsts: list[float] = []
    errors: Counter[str] = Counter()
    tickets = iter(range(n))

    async def worker(i: int) -> None:
        for _ in tickets:
            try:
                async with asyncio.timeout(120):
                    total, first = await target.one(i, bodies[i], raws[i], stream)
            except Exception as exc:
                errors[f"{type(exc).__name__}: {str(exc)[:160]}"] += 1
                conn = target.conns[i]
                if conn is not None and conn.transport is not None:
                    conn.transport.close()
                target.conns[i] = None
                continue
            latencies.append(total * 1000)
            if first is not None:
                firsts.append(first * 1000)

    cpu0 = {name: _cpu_seconds(pgid) for name, pgid in pgids.items()}
    client0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(c)))
    wall = time.perf_counter() - t0
    cpu = {"client": time.process_time() - client0}
    for name, before in cpu0.items():
        after = _cpu_seconds(pgids[name])
        cpu[name] = None if before is None or after is None else after - before
    return {
        "n": n,
        "ok": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "wall_s": round(wall, 3),
        "rps": round(len(latencies) / wall, 1),
        **_stats("", latencies),
        **(_stats("first_content_", firsts) if stream else {}),
        "cpu_ms_per_req": {k: None if v is None else round(v * 1000 / n, 3) for k, v in cpu.items()},
    }


def _stats(prefix: str, values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {f"{prefix}{k}_ms": None for k in ("p50", "p95", "p99", "mean")}
    q = statistics.quantiles(values, n=100, method="inclusive")
    return {
        f"{prefix}p50_ms": round(q[49], 3),
        f"{prefix}p95_ms": round(q[94], 3),
        f"{prefix}p99_ms": round(q[98], 3),
        f"{prefix}mean_ms": round(statistics.fmean(values), 3),
    }


def start_cozy(
    stub_url: str,
    api_key: str | None,
    data_dir: str | None = None,
    config_dir: Path | None = None,
    workers: int = 1,
) -> tuple[ManagedProcess, str]:
    """Start CozyEngine on a free port against the stub; ready once GET /ready
    answers 200 (models loaded: loading them would skew the figures).
    Its database: DATABASE_URL if set, else an embedded PostgreSQL under `data_dir` (a fresh temp
    folder, so runs never share state). The rate limit is lifted: this measures latency, not policy."""
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = str(venv_python) if venv_python.exists() else sys.executable
    env = {
        "COZY_LLM_BASE_URL": stub_url,
        "COZY_LLM_API_KEY": "stub",
        "COZY_LLM_MODEL": "stub-model",
        "COZY_LOG_LEVEL": "warning",
        "COZY_RATE_LIMIT_RPM": "100000000",
        "COZY_RATE_LIMIT_BURST": "1000000",
        **({"COZY_DATA_DIR": data_dir} if data_dir and not os.environ.get("DATABASE_URL") else {}),
        **({"COZY_BOOTSTRAP_ADMIN_KEY": api_key} if api_key else {}),
    }
    return start_cozy_serve(env, config_dir=config_dir, python=python, extra_args=workers_args(workers))


def workers_args(workers: int) -> list[str]:
    """`--workers N` for `cozy serve`, left out for 1 (the default) so older servers start too."""
    return [] if workers == 1 else ["--workers", str(workers)]


def personalization_config(data_dir: Path, delays_ms: list[float]) -> Path:
    """A copy of config/ whose context engines sleep `delays_ms` (knowledge, profile, memory) per fetch."""
    import yaml

    cfg = data_dir / "config"
    shutil.copytree(ROOT / "config", cfg)
    shutil.copytree(ROOT / "personalities", data_dir / "personalities")  # resolved next to config/
    ctx = yaml.safe_load((cfg / "context.yaml").read_text())
    for kind, ms in zip(("knowledge", "profile", "memory"), delays_ms, strict=True):
        ctx[kind] = {**ctx.get(kind, {}), "options": {"inject_delay_s": ms / 1000}}
    (cfg / "context.yaml").write_text(yaml.safe_dump(ctx))
    return cfg


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(results: dict[str, dict[str, Any]]) -> list[str]:
    """The printed table, overheads and target checks (overheads are also stored in results)."""
    cols = f"{'mode':<10}{'target':<8}{'ok':>7}{'err':>5}" + "".join(
        f"{c:>8}" for c in ("p50", "p95", "p99", "mean", "req/s")
    )
    lines = [cols + f"{'1st p50':>9}{'1st p99':>9}   cpu ms/req client/stub/cozy"]
    for mode, res in results.items():
        for name in ("direct", "cozy"):
            if name not in res:
                continue
            r = res[name]
            cpu = "/".join(_fmt(r["cpu_ms_per_req"].get(k)) for k in ("client", "stub", "cozy"))
            lines.append(
                f"{mode:<10}{name:<8}{r['ok']:>7}{r['errors']:>5}"
                + "".join(f"{_fmt(r.get(k)):>8}" for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms"))
                + f"{r['rps']:>8.0f}{_fmt(r.get('first_content_p50_ms')):>9}"
                f"{_fmt(r.get('first_content_p99_ms')):>9}   {cpu}"
            )
    lines.append("")
    for mode, res in results.items():
        if "direct" not in res:  # a persisted mode: compared with its non-persisted twin below
            continue
        d, z = res["direct"], res["cozy"]
        keys = ["p50_ms", "p95_ms", "p99_ms"] + (
            ["first_content_p50_ms", "first_content_p99_ms"] if mode == "stream" else []
        )
        over = {k: None if d.get(k) is None or z.get(k) is None else round(z[k] - d[k], 3) for k in keys}
        res["overhead_ms"] = over
        checks = {
            "p50 < 5 ms": (over["p50_ms"], TARGETS["overhead_p50_ms"], True),
            "p99 < 20 ms": (over["p99_ms"], TARGETS["overhead_p99_ms"], True),
            ">= 300 req/s": (z["rps"], TARGETS["cozy_rps"], False),
        }
        res["targets_met"] = {
            k: v is not None and (v < lim if below else v >= lim) for k, (v, lim, below) in checks.items()
        }
        lines.append(
            f"overhead {mode:<9} " + "  ".join(f"{k.removesuffix('_ms')} {_fmt(v)} ms" for k, v in over.items())
        )
        lines.append(
            " " * 19
            + "targets: "
            + "  ".join(f"{k} {'ok' if met else 'MISSED'}" for k, met in res["targets_met"].items())
        )
    for mode, res in results.items():
        plain = results.get(mode.removesuffix("+persist"), {})
        if mode.endswith("+persist") and "cozy" in plain and "direct" in plain:
            keys = ["p50_ms", "p95_ms", "p99_ms"]
            cost = {
                k: None
                if res["cozy"].get(k) is None or plain["cozy"].get(k) is None
                else round(res["cozy"][k] - plain["cozy"][k], 3)
                for k in keys
            }
            over = {
                k: None
                if res["cozy"].get(k) is None or plain["direct"].get(k) is None
                else round(res["cozy"][k] - plain["direct"][k], 3)
                for k in keys
            }
            res["persist_cost_ms"], res["overhead_ms"] = cost, over
            lines.append(
                f"persisted {mode.removesuffix('+persist'):<8} turn cost vs stateless  "
                + "  ".join(f"{k.removesuffix('_ms')} {_fmt(v)} ms" for k, v in cost.items())
                + "   overhead vs direct  "
                + "  ".join(f"{k.removesuffix('_ms')} {_fmt(v)} ms" for k, v in over.items())
            )
    return lines


async def context_fetch_means(cozy_url: str, auth: dict[str, str]) -> dict[str, tuple[float, float]]:
    """(sum s, count) of `cozy_context_fetch_seconds` per engine, from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    root = cozy_url.rstrip("/").removesuffix("/v1")
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{root}/metrics", headers=auth)).text
    out: dict[str, list[float]] = {}
    for fam in text_string_to_metric_families(text):
        if fam.name == "cozy_context_fetch_seconds":
            for sample in fam.samples:
                slot = out.setdefault(sample.labels["engine"], [0.0, 0.0])
                if sample.name.endswith("_sum"):
                    slot[0] += sample.value
                elif sample.name.endswith("_count"):
                    slot[1] += sample.value
    return {k: (v[0], v[1]) for k, v in out.items()}


def mean_between(before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Mean latency (ms) per engine over the requests between two scrapes."""
    means = {}
    for name, (total, count) in after.items():
        t0, c0 = before.get(name, (0.0, 0.0))
        if count > c0:
            means[name] = round((total - t0) / (count - c0) * 1000, 1)
    return means


async def bench(args: argparse.Namespace, stub_url: str, cozy_url: str, pgids: dict[str, int | None]) -> dict:
    """Warm up, then measure direct and through-CozyEngine for each mode."""
    api_key = args.api_key or os.environ.get("COZY_API_KEY")
    auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    path = "/v1/chat/completions"
    direct = Target("direct", stub_url.removesuffix("/v1").rstrip("/") + path, {}, args.client)
    cozy = Target("cozy", cozy_url.rstrip("/").removesuffix("/v1") + path, auth, args.client)
    results: dict[str, dict[str, Any]] = {}
    for target in (direct, cozy):
        await target.open(args.concurrency)
    try:
        for stream in args.modes:
            mode = "stream" if stream else "no-stream"
            warm = min(200, max(args.concurrency, args.requests // 10))
            res: dict[str, Any] = {}
            # The baseline measures the core path (auth, actor, turn, proxy) with personalization off;
            # --personalization measures what fetching knowledge/profile/memory adds on top.
            off = {"use_personalization": False}
            for target in (direct, cozy):
                res[f"warmup_{target.name}"] = await run_phase(
                    target, warm, args.concurrency, stream, pgids, cozy_ext=off
                )
            for target in (direct, cozy):
                res[target.name] = await run_phase(target, args.requests, args.concurrency, stream, pgids, cozy_ext=off)
                print(f"  {mode} {target.name}: {res[target.name]['rps']:.0f} req/s", file=sys.stderr)
            results[mode] = res
            if args.persist:  # the same requests through CozyEngine, each worker in its own stored session
                tag = f"bench-{int(time.time())}-{mode}"
                pres: dict[str, Any] = {
                    "warmup_cozy": await run_phase(cozy, warm, args.concurrency, stream, pgids, tag)
                }
                pres["cozy"] = await run_phase(cozy, args.requests, args.concurrency, stream, pgids, tag)
                print(f"  {mode}+persist cozy: {pres['cozy']['rps']:.0f} req/s", file=sys.stderr)
                results[f"{mode}+persist"] = pres
            if args.personalization:  # the same requests with knowledge/profile/memory fetched per turn
                on = {"use_personalization": True}
                pz: dict[str, Any] = {
                    "warmup_cozy": await run_phase(cozy, warm, args.concurrency, stream, pgids, cozy_ext=on)
                }
                before = await context_fetch_means(cozy_url, auth)
                pz["cozy"] = await run_phase(cozy, args.requests, args.concurrency, stream, pgids, cozy_ext=on)
                base_p50, p50 = res["cozy"]["p50_ms"], pz["cozy"]["p50_ms"]
                pz["added_p50_ms"] = None if base_p50 is None or p50 is None else round(p50 - base_p50, 3)
                pz["slowest_engine_ms"] = max(args.personalization)
                # What each engine really took (injected delay + its PostgreSQL query), from the server.
                pz["engine_mean_ms"] = mean_between(before, await context_fetch_means(cozy_url, auth))
                print(
                    f"  {mode}+personalization: added p50 {pz['added_p50_ms']} ms "
                    f"(slowest engine {max(args.personalization):g} ms injected; measured means "
                    f"{pz['engine_mean_ms']})",
                    file=sys.stderr,
                )
                results[f"{mode}+personalization"] = pz
    finally:
        for target in (direct, cozy):
            await target.close()
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the processes, run, print and save; 1 if any request failed."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", "--requests", type=int, default=2000, help="measured requests per mode and target")
    p.add_argument("-c", "--concurrency", type=int, default=50)
    p.add_argument("--stream", dest="modes", action="store_const", const=[True], help="stream mode only")
    p.add_argument("--no-stream", dest="modes", action="store_const", const=[False], help="JSON mode only")
    p.add_argument("--ttft-ms", type=float, default=50.0, help="stub: delay before the first chunk")
    p.add_argument("--token-ms", type=float, default=5.0, help="stub: delay between chunks")
    p.add_argument("--tokens", type=int, default=20, help="stub: words per reply")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "chat_overhead.json"))
    p.add_argument("--cozy-url", help="use this running server (http://host:port) instead of starting one")
    p.add_argument("--api-key", help="Bearer key for CozyEngine (default: env COZY_API_KEY)")
    p.add_argument("--client", choices=["raw", "httpx"], default="raw", help="load generator (see README)")
    p.add_argument("--workers", type=int, default=1, help="server worker processes (cozy serve --workers)")
    p.add_argument(
        "--cpu-per-worker",
        type=float,
        default=None,
        help="hold each worker process to this many cores (cgroup v1 cpu quota; see cpu_cap.py)",
    )
    p.add_argument(
        "--persist",
        action="store_true",
        help="also run every mode with cozy.session_id set (history loaded, turns stored in PostgreSQL)",
    )
    p.add_argument(
        "--personalization",
        nargs="?",
        const="30,10,20",
        default=None,
        metavar="K,P,M",
        help="also run with personalization on; engines get these injected delays in ms "
        "(knowledge, profile, memory; default 30,10,20); baseline requests turn it off",
    )
    args = p.parse_args(argv)
    if args.personalization:
        args.personalization = [float(x) for x in args.personalization.split(",")]
    args.modes = args.modes or [False, True]
    api_key = args.api_key or os.environ.get("COZY_API_KEY")
    if api_key is None and not args.cozy_url:
        api_key = args.api_key = "cozy-bench-" + secrets.token_urlsafe(24)  # bootstrap admin key of our server
    cozy_proc: ManagedProcess | None = None
    data_dir: str | None = None
    groups: list[Path] = []
    with start_stub_llm(args.ttft_ms, args.token_ms, args.tokens) as stub:
        try:
            if args.cozy_url:
                cozy_url = args.cozy_url
            else:
                data_dir = tempfile.mkdtemp(prefix="cozy-bench-")
                cfg = personalization_config(Path(data_dir), args.personalization) if args.personalization else None
                cozy_proc, cozy_url = start_cozy(stub.base_url, api_key, data_dir, cfg, args.workers)
                if args.cpu_per_worker:
                    groups = cpu_cap.cap(cpu_cap.worker_pids(cozy_proc.pid, args.workers), args.cpu_per_worker)
            pgids = {"stub": stub.process.pid, "cozy": cozy_proc.pid if cozy_proc else None}
            try:
                import uvloop
            except ImportError:
                results = asyncio.run(bench(args, stub.base_url, cozy_url, pgids))
            else:
                results = uvloop.run(bench(args, stub.base_url, cozy_url, pgids))
        finally:
            if cozy_proc is not None:
                cozy_proc.stop(grace=20)  # graceful: the embedded PostgreSQL is stopped by the server
            cpu_cap.release(groups)
            if data_dir:
                shutil.rmtree(data_dir, ignore_errors=True)
    lines = report(results)
    print("\n".join(lines))
    failed = 0
    for mode, res in results.items():
        for name, r in res.items():
            if isinstance(r, dict) and r.get("errors"):
                failed += r["errors"]
                print(f"errors {mode}/{name}: {r['error_kinds']}", file=sys.stderr)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    params = {k: v for k, v in vars(args).items() if k not in ("out", "api_key")}
    params.update(cozy_url=args.cozy_url or cozy_url, api_key_set=bool(api_key))
    machine = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }
    out.write_text(
        json.dumps(
            {
                "params": params,
                "machine": machine,
                "targets": TARGETS,
                "results": results,
                "failed_requests": failed,
                "generated_at": time.time(),
            },
            indent=2,
        )
    )
    print(f"\nwritten {out}; failed requests: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

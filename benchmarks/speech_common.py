"""Shared by the speech benchmarks: start (or reach) a server, percentiles, the JSON report."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script

from tests.support.procs import ManagedProcess, start_cozy_serve  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def start_server(extra_env: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
    """`cozy serve` on a free port with the bundled speech models; returns (process, root URL)."""
    env = {
        "COZY_AUTH_ENABLED": "false",
        "COZY_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # no LLM is loaded: speech only
        "COZY_LLM_API_KEY": "unused",
        "COZY_LLM_MODEL": "unused-model",
        "COZY_LOG_LEVEL": "warning",
        "COZY_DATA_DIR": str(ROOT / ".cozy-data" / "bench"),
        **(extra_env or {}),
    }
    return start_cozy_serve(env, config_dir=ROOT / "config", timeout=300)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def summary(values: list[float], digits: int = 1) -> dict[str, float]:
    """p50/p95/mean/min/max of the measured values; `missing` counts runs without a value (NaN)."""
    got = [v for v in values if v == v]
    nan = float("nan")
    return {
        "n": len(got),
        "missing": len(values) - len(got),
        "p50": round(pct(got, 50), digits),
        "p95": round(pct(got, 95), digits),
        "mean": round(statistics.fmean(got), digits) if got else nan,
        "min": round(min(got), digits) if got else nan,
        "max": round(max(got), digits) if got else nan,
    }


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_at_end": load,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_report(name: str, data: dict[str, Any], out: str | None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**data, "machine": machine()}, indent=2))
    return path


def print_table(title: str, rows: dict[str, dict[str, float]], unit: str = "ms") -> None:
    print(f"\n{title}")
    width = max(len(name) for name in rows)
    print(f"  {'metric':<{width}} {'n':>4} {'p50':>9} {'p95':>9} {'min':>9} {'max':>9}")
    for name, s in rows.items():
        missing = f"  ({s['missing']} without)" if s.get("missing") else ""
        print(
            f"  {name:<{width}} {s['n']:>4} {s['p50']:>7.1f}{unit:>2} {s['p95']:>7.1f}{unit:>2} "
            f"{s['min']:>7.1f}{unit:>2} {s['max']:>7.1f}{unit:>2}{missing}"
        )

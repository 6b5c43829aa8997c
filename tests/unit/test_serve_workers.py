"""`cozy serve --workers N|auto` argument and `api.workers` handling (the processes: tests/cluster)."""

from __future__ import annotations

import os

import pytest

from cozy_actors.config import load_settings
from cozy_actors.worker import sibling_workers, worker_id
from cozy_http.cli import build_parser, worker_count


def test_worker_count() -> None:
    assert worker_count("3") == 3 and worker_count(1) == 1
    assert worker_count("auto") == len(os.sched_getaffinity(0))
    for bad in ("0", "-2", "many"):
        with pytest.raises(ValueError):
            worker_count(bad)


def test_the_flag_and_the_setting() -> None:
    assert build_parser().parse_args(["serve", "--workers", "auto"]).workers == "auto"
    assert build_parser().parse_args(["serve"]).workers is None  # then api.workers decides
    assert load_settings(env={}).api.workers == 1  # the default: one process
    assert load_settings(env={"COZY_WORKERS": "auto"}).api.workers == "auto"
    assert load_settings(env={"COZY_WORKERS": "4"}).api.workers == 4


def test_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COZY_WORKER_ID", raising=False)
    monkeypatch.delenv("COZY_WORKER_COUNT", raising=False)
    assert worker_id().endswith(f"-{os.getpid()}") and sibling_workers() == 1
    monkeypatch.setenv("COZY_WORKER_ID", "node-a-w1")
    monkeypatch.setenv("COZY_WORKER_COUNT", "2")
    assert worker_id() == "node-a-w1" and sibling_workers() == 2

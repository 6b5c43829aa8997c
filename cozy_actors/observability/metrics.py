"""Prometheus metrics shared by the runtime, the engines and the edge.

Defined once here so every layer records into the same series; the edge only exposes them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

HTTP_LATENCY = Histogram(
    "cozy_http_request_duration_seconds",
    "HTTP request latency by route and status.",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LIVE_ACTORS = Gauge("cozy_live_actors", "Actors currently running.", ["kind"])
ACTOR_RESTARTS = Counter("cozy_actor_restarts_total", "Actor restarts after a crash.", ["kind"])
ACTOR_STOPS = Counter("cozy_actor_stops_total", "Actor stops by reason.", ["kind", "reason"])
MAILBOX_REJECTED = Counter(
    "cozy_mailbox_rejected_total", "Messages refused or dropped because a mailbox was full.", ["kind", "lane"]
)
TURN_STAGE = Histogram(
    "cozy_turn_stage_seconds",
    "Latency of each stage of a conversation turn (context, llm_first_token, llm_total, tool, turn_total).",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TURNS = Counter("cozy_turns_total", "Turns by mode and outcome.", ["mode", "outcome"])
ENGINE_CALLS = Counter(
    "cozy_engine_calls_total", "Engine calls by engine, provider and outcome.", ["engine", "provider", "outcome"]
)
TOOL_CALLS = Counter("cozy_tool_calls_total", "Server-side tool executions by tool and outcome.", ["tool", "outcome"])


@lru_cache(maxsize=4096)
def labelled(metric: MetricWrapperBase, *values: str) -> Any:
    """`metric.labels(*values)`, cached: `labels()` costs a lock and a dict walk per call, which
    adds up on per-request and per-turn paths."""
    return metric.labels(*values)

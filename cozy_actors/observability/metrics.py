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
    "Latency of each stage of a conversation turn (context, llm_first_token, llm_total, tool, turn_total; "
    "voice: stt_final, end of speech -> final transcript, and tts_first_chunk, first text -> first audio).",
    ["stage"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PREEMPTIVE = Counter(
    "cozy_preemptive_generations_total",
    "Model calls started at a speaker's pause (conversation/primed.py): used by the turn, or discarded.",
    ["outcome"],
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


# --- storage, Redis, queue, auth (system of record) ---------------------------------------------
LEASE_LOST = Counter(
    "cozy_lease_lost_writes_total",
    "Writes refused because this worker's lease on the conversation was taken over (fencing).",
    ["channel"],
)
STORAGE_ERRORS = Counter("cozy_storage_errors_total", "Database failures by operation and kind.", ["op", "kind"])
REDIS_UP = Gauge("cozy_redis_up", "1 while Redis answers, 0 while the in-process fallbacks serve (absent: no Redis).")
REDIS_FALLBACKS = Counter(
    "cozy_redis_fallbacks_total", "Operations served in-process because Redis failed.", ["component"]
)
QUEUE_BACKLOG = Gauge("cozy_queue_backlog", "Background write entries not yet processed.", ["topic", "backend"])
QUEUE_EVENTS = Counter(
    "cozy_queue_events_total", "Background write entries by outcome (ok, retried, dead).", ["topic", "outcome"]
)
AUTH_FAILURES = Counter("cozy_auth_failures_total", "Refused requests by reason.", ["reason"])
RATE_LIMITED = Counter("cozy_rate_limited_total", "Requests refused by the rate limiter.", [])
QUOTA_REFUSED = Counter("cozy_quota_refused_total", "Requests refused by a per-user quota.", ["kind"])
QUOTA_HELD = Gauge("cozy_quota_slots_held", "Per-user quota slots held now (all users together).", ["kind"])
AUDIT_DROPPED = Counter(
    "cozy_audit_dropped_total", "auth.failed audit events dropped because their bounded lane was full.", []
)
AUDIT_SAMPLED_OUT = Counter(
    "cozy_audit_sampled_out_total",
    "Audit events not written because they repeat a refusal already recorded (e.g. a rate-limited flood).",
    ["type", "reason"],
)

INTERRUPT_LATENCY = Histogram(
    "cozy_interrupt_latency_seconds",
    "Barge-in: VAD speech start detected -> the response's audio output stopped.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)

FALSE_INTERRUPTIONS = Counter(
    "cozy_false_interruptions_total",
    "Speech over a paused reply judged not an interruption (no_words, noise, backchannel, echo).",
    ["reason"],
)
INTERRUPTIONS_RESUMED = Counter(
    "cozy_interruptions_resumed_total",
    "Paused replies resumed from the first unheard sample, by the reason (deadline: no_words).",
    ["reason"],
)
INTERRUPTIONS = Counter(
    "cozy_interruptions_total", "Replies cut off by the user's speech (real interruptions), by mode.", ["mode"]
)

EVENT_LOOP_LAG = Histogram(
    "cozy_event_loop_lag_seconds",
    "How late a 100 ms timer fires on the event loop (sampled 10 times a second).",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# --- personalization (knowledge, profile, memory) ------------------------------------------------
CONTEXT_DEGRADED = Counter(
    "cozy_context_degraded_total", "Context engine fetches that degraded a turn.", ["engine", "reason"]
)
CONTEXT_FETCH = Histogram(
    "cozy_context_fetch_seconds",
    "Latency of each context engine fetch by outcome (ok, timeout, error).",
    ["engine", "outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONTEXT_UPDATES = Counter(
    "cozy_context_updates_total", "Turns learned by memory/profile engines by outcome.", ["engine", "outcome"]
)
CONTEXT_UPDATE_LATENCY = Histogram(
    "cozy_context_update_seconds",
    "Latency of one memory/profile update batch.",
    ["engine"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

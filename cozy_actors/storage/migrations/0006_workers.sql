-- Shared between worker processes without Redis (`cozy serve --workers N`): rate-limit token
-- buckets and per-user quota leases. Both are ephemeral (UNLOGGED: no WAL; a PostgreSQL crash
-- empties them, which only forgets recent traffic and live leases of processes that died with it).

CREATE UNLOGGED TABLE rate_buckets (
    key text PRIMARY KEY,
    tokens double precision NOT NULL,
    ts timestamptz NOT NULL,
    allowed boolean NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX rate_buckets_expires ON rate_buckets (expires_at);

-- One row per (kind, owner, worker): how many slots that worker holds now. A worker refreshes
-- beat_at every second; rows of a worker silent for the quota TTL are a dead worker's (kill -9)
-- and count for nothing (then are deleted), so a killed worker never leaks a user's share.
CREATE UNLOGGED TABLE quota_leases (
    kind text NOT NULL,
    owner text NOT NULL,
    worker_id text NOT NULL,
    held integer NOT NULL,
    beat_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, owner, worker_id)
);
CREATE INDEX quota_leases_worker ON quota_leases (worker_id);

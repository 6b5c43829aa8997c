-- Issue 11: exactly one live owner per conversation (DESIGN, Placement; cozy_actors/placement).

-- One row per live worker process, refreshed every second (one UPSERT a worker, not one a session).
-- A worker whose heartbeat is older than the placement ttl is dead: its leases are free. `epoch` is
-- the token sequence's value when the process started, so a lease its previous incarnation (same
-- id, e.g. COZY_WORKER_ID=worker-0 after a crash) left behind is not mistaken for a live one.
CREATE TABLE workers (
    id           text PRIMARY KEY,
    address      text NOT NULL,               -- internal base URL: where the edge forwards requests
    heartbeat_at timestamptz NOT NULL,
    epoch        bigint NOT NULL DEFAULT 0
);

-- The lease lives on the session row, so the store checks it in the same statement as each write
-- (fencing): an append carrying another token is refused. NULL owner: nobody holds it.
ALTER TABLE sessions
    ADD COLUMN owner_worker text,             -- workers.id (no foreign key: a deleted worker frees it)
    ADD COLUMN owner_token  bigint,           -- fencing token, from session_owner_tokens
    ADD COLUMN owner_kind   text CHECK (owner_kind IN ('turn', 'call'));

CREATE SEQUENCE session_owner_tokens;

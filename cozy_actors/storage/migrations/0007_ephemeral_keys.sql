-- Issue 12: OpenAI-style ephemeral keys (`POST /v1/realtime/client_secrets`). A browser holds one
-- instead of an API key: it starts ONE Realtime session (WebRTC call or WebSocket) as the user who
-- made it, with the session config given at creation, until it expires. Only the SHA-256 of the
-- key is stored; redeeming marks the row used in the same statement, so two workers cannot both
-- take it. Rows are removed a while after they expire.
CREATE TABLE ephemeral_keys (
    digest      text PRIMARY KEY,            -- sha256 hex of "ek_..."
    principal   jsonb NOT NULL,              -- who made it (user id, role, key id): the session acts as them
    session     jsonb NOT NULL,              -- the GA session config the session starts with
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX ephemeral_keys_expires_at ON ephemeral_keys (expires_at);

-- CozyEngine system of record: users, their API keys, chat sessions, messages and audit events.
-- gen_random_uuid() is core PostgreSQL (13+); no extension is needed (the embedded server has none).

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$'),
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    password_hash text,                       -- argon2id; NULL: API keys only
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_hash       bytea NOT NULL UNIQUE,     -- sha256 of the whole key; the key itself is never stored
    prefix         text NOT NULL,             -- first characters, to recognise a key in lists and audit
    name           text,
    rate_limit_rpm double precision CHECK (rate_limit_rpm > 0),  -- NULL: the configured default
    rate_limit_burst integer CHECK (rate_limit_burst > 0),        -- NULL: the configured default
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_used_at   timestamptz,
    revoked_at     timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE sessions (
    id             text PRIMARY KEY,          -- client-chosen (cozy.session_id) or server-generated
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    personality_id text NOT NULL,
    title          text,
    metadata       jsonb NOT NULL DEFAULT '{}'::jsonb,
    message_count  integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz                -- soft delete: gone from lists and reads, kept here
);
CREATE INDEX sessions_user_created ON sessions (user_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE messages (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id        text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    role              text NOT NULL CHECK (role IN ('system', 'developer', 'user', 'assistant', 'tool')),
    content           jsonb,                  -- a string, a list of content parts, or null
    name              text,
    tool_calls        jsonb,
    tool_call_id      text,
    model             text,
    prompt_tokens     integer,
    completion_tokens integer,
    latency_ms        integer,
    incomplete        boolean NOT NULL DEFAULT false,  -- the turn died before this message was finished
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_session ON messages (session_id, id);

CREATE TABLE audit_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    type       text NOT NULL,                 -- e.g. auth.failed, admin.personalities.reload, tool.call
    user_id    uuid,                          -- no foreign key: the trail outlives the user
    user_name  text,
    outcome    text NOT NULL DEFAULT 'ok',
    request_id text,
    resource   text,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_at ON audit_events (at DESC, id DESC);
CREATE INDEX audit_events_type_at ON audit_events (type, at DESC);
CREATE INDEX audit_events_user_at ON audit_events (user_id, at DESC);

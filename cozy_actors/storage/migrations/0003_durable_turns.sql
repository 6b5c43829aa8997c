-- Issue 10: soft delete reaches memory and profile; turns survive a crash (checkpoints).

-- Which sessions taught each fact ('' = no session: a stateless chat, or learned before this version).
-- Deleting a session removes it from here; a fact no session still backs is deleted with it.
ALTER TABLE memory_facts ADD COLUMN sources text[] NOT NULL DEFAULT '{}';
UPDATE memory_facts SET sources = ARRAY['']::text[];

-- The profile is the merge of what each session taught, oldest first; deleting a session drops its
-- row and the profile is rebuilt from the rest. Existing profiles become the '' (no session) row.
CREATE TABLE profile_contributions (
    user_id    text NOT NULL,
    session_id text NOT NULL,                   -- '' = no session
    attributes jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, session_id)
);
INSERT INTO profile_contributions (user_id, session_id, attributes, created_at, updated_at)
SELECT user_id, '', attributes, updated_at, updated_at FROM user_profiles;

-- A reply being streamed, saved every checkpoint interval by its node, so a node killed mid-turn
-- (SIGKILL, OOM, power) still leaves the heard text: a checkpoint nobody touched for
-- `orphan_turn_after_s` becomes an `incomplete` assistant message. `done` is the tombstone the
-- final append writes (atomically with the message), so a late checkpoint write cannot revive it.
CREATE TABLE turn_checkpoints (
    id         text PRIMARY KEY,
    session_id text NOT NULL,
    model      text,
    content    text NOT NULL DEFAULT '',
    done       boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX turn_checkpoints_updated ON turn_checkpoints (updated_at);

-- Personalization on PostgreSQL: knowledge chunks per dataset, remembered facts, user profiles.
-- Full-text search only (core PostgreSQL); user_id is text so a turn without a stored user still works.

CREATE TABLE knowledge_chunks (
    id          bigserial PRIMARY KEY,
    dataset     text NOT NULL,
    document_id uuid NOT NULL,
    title       text NOT NULL DEFAULT '',
    chunk_index integer NOT NULL,
    content     text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}',
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || content)) STORED,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_chunks_tsv ON knowledge_chunks USING gin (tsv);
CREATE INDEX knowledge_chunks_dataset ON knowledge_chunks (dataset);

CREATE TABLE memory_facts (
    id         bigserial PRIMARY KEY,
    user_id    text NOT NULL,
    fact       text NOT NULL,
    kind       text NOT NULL DEFAULT 'fact',
    tsv        tsvector GENERATED ALWAYS AS (to_tsvector('english', fact)) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, fact)
);
CREATE INDEX memory_facts_tsv ON memory_facts USING gin (tsv);

CREATE TABLE user_profiles (
    user_id    text PRIMARY KEY,
    attributes jsonb NOT NULL DEFAULT '{}',
    summary    text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now()
);

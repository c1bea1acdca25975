-- Ingest (issue #3), Postgres dialect; the SQLite twin is migrations/sqlite/V2__ingest.sql.

-- Deployment-wide secrets (e.g. the key that signs our Message-IDs). Every
-- node inserts a random value if none exists yet (ON CONFLICT DO NOTHING) and
-- then reads it back, so all nodes end up with the first one written.
CREATE TABLE server_secrets (
    name       text COLLATE "C" PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL
);

-- A thread is continued by at most one thread 2: replies to a closed thread
-- follow `continued_in_id` to the newest thread instead of forking the
-- conversation. Ingest locks the thread before continuing it; this index is
-- the backstop that makes a fork impossible whatever the code does.
CREATE UNIQUE INDEX interactions_continues ON interactions (continues_id)
    WHERE continues_id IS NOT NULL;
